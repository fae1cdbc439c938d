package release

import "fmt"

// Site is where Kong's source writes a log line: the file's base name (the
// PDK logger keeps only that: kong/pdk/log.lua) and the line of the
// kong.log call. Line 0: the release has no such line.
type Site struct {
	File string
	Line int
}

// Lines are the sites of every line kong-sim writes for the plugin
// servers, as one release's source has them. Only the text is matched by
// readers; the numbers let a person compare kong-sim's log with a real one.
type Lines struct {
	Source string // what the numbers were read from

	PBConnect, PBStarted, PBWarn, PBError Site // pb_rpc.lua: Rpc:call, call_start_instance, handle_event
	StartingInstance                      Site // get_instance_id's "starting instance: ERR"
	MPConnect, MPWarn, MPError            Site // mp_rpc.lua: Rpc:call, handle_event
	NotReady                              Site // process.lua handle_not_ready (3.4 only)
	PluginRaised                          Site // kong/init.lua's access iterator: kong.log.err(cerr)

	// process.lua, 3.4-3.8 wording
	SearchConfig, Duplicate, NoInfoQuery Site
	// process.lua, both wordings
	Starting, NotFound, Terminated, Exiting Site
	// 3.9+: process.lua and rpc/init.lua
	LoadingInfo, LoadedInfo, Started, LoadingProtocol Site
}

func pb(line int) Site   { return Site{"pb_rpc.lua", line} }
func mp(line int) Site   { return Site{"mp_rpc.lua", line} }
func proc(line int) Site { return Site{"process.lua", line} }
func ini(line int) Site  { return Site{"init.lua", line} }

// process34 are process.lua's sites in 3.4-3.8: search config, Duplicate,
// No info query, Starting, command not found (the format's line, as the
// call spans two), terminated, Exiting.
func process34(l *Lines, search, dup, noInfo, starting, notFound, terminated, exiting int) Lines {
	l.SearchConfig, l.Duplicate, l.NoInfoQuery = proc(search), proc(dup), proc(noInfo)
	l.Starting, l.NotFound, l.Terminated, l.Exiting = proc(starting), proc(notFound), proc(terminated), proc(exiting)
	return *l
}

// sourceLines are read from Kong's repository (kong/runloop/plugin_servers)
// at the tag or Enterprise commit each Source names; `git show
// TAG:kong/runloop/plugin_servers/pb_rpc.lua | grep -n kong.log` finds them;
// PluginRaised is `git show TAG:kong/init.lua | grep -n 'kong.log.err(cerr)'`.
var sourceLines = map[string]Lines{
	"oss-3.4.0": process34(&Lines{
		Source:    "tags 3.4.0-3.4.2 (EE 3.4.0.0 inferred)",
		PBConnect: pb(307), PBWarn: pb(409), PBError: pb(413), StartingInstance: ini(249), PluginRaised: ini(363),
		MPConnect: mp(208), MPWarn: mp(343), MPError: mp(347), NotReady: proc(285),
	}, 66, 117, 135, 252, 264, 268, 273),
	"oss-3.5.0": process34(&Lines{
		Source:    "tag 3.5.0",
		PBConnect: pb(306), PBWarn: pb(411), PBError: pb(414), StartingInstance: ini(239), PluginRaised: ini(405),
		MPConnect: mp(206), MPWarn: mp(340), MPError: mp(343),
	}, 61, 112, 130, 217, 229, 233, 238),
	"ee-3.4-report": process34(&Lines{
		Source:    "the original report (pb_rpc.lua 381, 413, 417); the rest from Enterprise 440444efb8 (the 3.4 branch is not public)",
		PBConnect: pb(313), PBStarted: pb(381), PBWarn: pb(417), PBError: pb(413), StartingInstance: ini(247), PluginRaised: ini(380),
		MPConnect: mp(213), MPWarn: mp(347), MPError: mp(350),
	}, 68, 119, 137, 224, 236, 240, 245),
	"ee-cbd03af6b2": process34(&Lines{
		Source:    "Enterprise cbd03af6b2 (the 3.5 release freeze)",
		PBConnect: pb(313), PBStarted: pb(381), PBError: pb(415), StartingInstance: ini(247), PluginRaised: ini(422),
		MPConnect: mp(213), MPWarn: mp(347), MPError: mp(350),
	}, 68, 119, 137, 224, 236, 240, 245),
	"ee-901955459b": process34(&Lines{
		Source:    "Enterprise 901955459b",
		PBConnect: pb(313), PBStarted: pb(381), PBWarn: pb(417), PBError: pb(421), StartingInstance: ini(247), PluginRaised: ini(423),
		MPConnect: mp(215), MPWarn: mp(348), MPError: mp(352),
	}, 67, 118, 136, 223, 235, 239, 244),
	"ee-ea9c42240e": process34(&Lines{
		Source:    "Enterprise ea9c42240e (#12718)",
		PBConnect: pb(313), PBStarted: pb(381), PBWarn: pb(417), PBError: pb(421), StartingInstance: ini(249), PluginRaised: ini(423),
		MPConnect: mp(215), MPWarn: mp(348), MPError: mp(352),
	}, 67, 118, 136, 223, 235, 239, 244),
	"oss-3.6.0": process34(&Lines{
		Source:    "tags 3.6.0-3.6.1",
		PBConnect: pb(306), PBStarted: pb(374), PBError: pb(408), StartingInstance: ini(240), PluginRaised: ini(405),
		MPConnect: mp(206), MPWarn: mp(340), MPError: mp(343),
	}, 61, 112, 130, 217, 229, 233, 238),
	"oss-3.7.0": process34(&Lines{
		Source:    "tags 3.7.0-3.8.1 (3.8's `pluginserver error:` is on 3.7's kong.log.err line; EE inferred)",
		PBConnect: pb(306), PBStarted: pb(374), PBWarn: pb(410), PBError: pb(414), StartingInstance: ini(242), PluginRaised: ini(409),
		MPConnect: mp(208), MPWarn: mp(341), MPError: mp(345),
	}, 61, 112, 130, 217, 229, 233, 238),
	"oss-3.9.0": {
		Source:    "tags 3.9.0-3.9.3 (rpc/pb_rpc.lua, rpc/mp_rpc.lua, plugin.lua, rpc/init.lua; EE with its licence header inferred)",
		PBConnect: pb(273), PBStarted: pb(341), PBWarn: pb(378), PBError: pb(382), StartingInstance: Site{"plugin.lua", 283}, PluginRaised: ini(406),
		MPConnect: mp(178), MPWarn: mp(314), MPError: mp(318),
		Starting: proc(152), NotFound: proc(167), Terminated: proc(173), Exiting: proc(181),
		LoadingInfo: proc(90), LoadedInfo: proc(101), Started: proc(158), LoadingProtocol: ini(12),
	},
}

// Lines are the source sites of the family's release.
func (f Family) Lines() Lines {
	return sourceLines[f.SourceLines]
}

func validateSourceLines(name string) error {
	if _, ok := sourceLines[name]; !ok {
		return fmt.Errorf("source_lines %q is not a known source", name)
	}
	return nil
}
