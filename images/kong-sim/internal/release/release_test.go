package release

import (
	"fmt"
	"strings"
	"testing"

	"github.com/kong-plugin-matrix/kong-sim/internal/reuse"
)

func TestForVersionReadsTheTable(t *testing.T) {
	cases := map[string]struct {
		family string
		model  reuse.Model
	}{
		"3.4.0.0": {"3.4-seq", reuse.Seq}, "3.4.0": {"3.4-seq", reuse.Seq}, "3.4.2": {"3.4-seq", reuse.Seq},
		"3.5.0":   {"oss-3.5.0", reuse.Seq},
		"3.4.1.0": {"ee-key-bug", reuse.Key}, "3.4.1.1": {"ee-key-bug", reuse.Key}, "3.4.2.0": {"ee-key-bug", reuse.Key},
		"3.4.2.1": {"ee-key-bug", reuse.Key}, "3.5.0.0": {"ee-key-bug-3.5", reuse.Key}, "3.5.0.1": {"ee-key-bug-3.5", reuse.Key},
		"3.4.3.1": {"plugin-id", reuse.PluginID}, "3.4.3.5": {"plugin-id", reuse.PluginID},
		"3.5.0.2": {"plugin-id", reuse.PluginID}, "3.5.0.3": {"plugin-id", reuse.PluginID},
		"3.6.0.0": {"plugin-id", reuse.PluginID}, "3.6.1.1": {"plugin-id", reuse.PluginID},
		"3.6.0": {"oss-3.6", reuse.PluginID}, "3.6.1": {"oss-3.6", reuse.PluginID},
		"3.4.3.6": {"plugin-id-12718-backport", reuse.SeqAndPluginID}, "3.4.3.12": {"plugin-id-12718-backport", reuse.SeqAndPluginID},
		"3.5.0.4": {"plugin-id-12718-backport", reuse.SeqAndPluginID}, "3.6.1.2": {"plugin-id-12718-backport", reuse.SeqAndPluginID},
		"3.7.0.0": {"3.7", reuse.SeqAndPluginID}, "3.8.0.0": {"3.8", reuse.SeqAndPluginID}, "3.7.1": {"3.7", reuse.SeqAndPluginID}, "3.8.1": {"3.8", reuse.SeqAndPluginID},
		"3.9.0.0": {"3.9", reuse.SeqAndPluginID}, "3.9.1.1": {"3.9", reuse.SeqAndPluginID}, "3.9.1": {"3.9", reuse.SeqAndPluginID},
		"3.9.3": {"3.9", reuse.SeqAndPluginID}, "3.9.1.2": {"3.9", reuse.SeqAndPluginID},
		"3.10.0.0": {"3.10-3.13", reuse.SeqAndPluginID}, "3.13.0.10": {"3.10-3.13", reuse.SeqAndPluginID},
		"3.14.0.0": {"3.14", reuse.SeqAndPluginID}, "3.14.0.13": {"3.14", reuse.SeqAndPluginID},
		"3.15.0.0": {"3.15", reuse.SeqAndPluginID}, "3.15.0.4": {"3.15", reuse.SeqAndPluginID},
	}
	for version, want := range cases {
		got, err := ForVersion(version)
		if err != nil || got.Name != want.family || got.Reuse != want.model {
			t.Errorf("ForVersion(%q) = %q/%q, %v; want %q/%q", version, got.Name, got.Reuse, err, want.family, want.model)
		}
	}
}

func TestForVersionRefusesUnknownVersionsNamingTheKnownOnes(t *testing.T) {
	for _, version := range []string{"", "latest", "3.3.1.0", "3.3.0", "3.4.3.0", "3.4.1.2", "3.5.1", "2.8.4.1", "3.4", "3.10.0", "3.16.0.0"} {
		family, err := ForVersion(version)
		if err == nil {
			t.Errorf("ForVersion(%q) = %q, want an error", version, family.Name)
			continue
		}
		if !strings.Contains(err.Error(), "EE 3.4.1.0-3.4.2.1") || !strings.Contains(err.Error(), "KONG_SIM_REUSE_MODEL") {
			t.Errorf("error for %q does not name the known releases: %v", version, err)
		}
	}
}

func TestTheTableHasEveryBehaviourOfTheFactsPage(t *testing.T) {
	byName := map[string]Family{}
	for _, f := range Families() {
		byName[f.Name] = f
	}
	early, oss35, bug, fixed, backport, late, v39 := byName["3.4-seq"], byName["oss-3.5.0"], byName["ee-key-bug"],
		byName["plugin-id"], byName["plugin-id-12718-backport"], byName["3.8"], byName["3.9"]
	if early.SeqSource != PerWorker || oss35.SeqSource != PerWorker || bug.SeqSource != Node || v39.SeqSource != Node {
		t.Error("__seq__ is per-worker up to OSS 3.5.0 and node-wide from the regression on")
	}
	if early.OnClosed != WipeLocal || oss35.OnClosed != PostEvent || bug.OnClosed != WipeLocalAndPostEvent {
		t.Error("on closed: local wipe (3.4.0), event only (OSS 3.5.0), both (from the regression)")
	}
	if early.ResetHandlers != NoHandlers || oss35.ResetHandlers != Worker0Raises || late.ResetHandlers != Worker0 || v39.ResetHandlers != EveryWorker {
		t.Error("reset_instances handlers: none, worker 0 up to 3.8, every worker in 3.9")
	}
	// Enterprise 901955459b (3.4.3.1, 3.5.0.2, 3.6.0.0): [warn] and retry; the
	// 3.5 freeze cbd03af6b2 and open-source 3.6: [error], lower-cased.
	bug35, oss36 := byName["ee-key-bug-3.5"], byName["oss-3.6"]
	if early.RecoveryLog != Warn || bug.RecoveryLog != ErrorThenWarn || fixed.RecoveryLog != Warn ||
		backport.RecoveryLog != Warn || late.RecoveryLog != Warn || v39.RecoveryLog != Warn ||
		bug35.RecoveryLog != ErrorLowercased || oss36.RecoveryLog != ErrorLowercased {
		t.Error("recovery log lines differ from the facts page")
	}
	if early.StartedLine || oss35.StartedLine || !bug.StartedLine || !v39.StartedLine {
		t.Error("`started plugin server` exists from the regression on")
	}
	for _, f := range Families() {
		if f.NotReadyGate != (f.Name == "3.4-seq") {
			t.Errorf("%s: the not-ready gate exists in OSS 3.4.0-3.4.2 / EE 3.4.0.0 only", f.Name)
		}
		if (f.ProcessLines == Lines39) != (f.Name == "3.9" || f.Name == "3.10-3.13" || f.Name == "3.14" || f.Name == "3.15") {
			t.Errorf("%s: process lines %s", f.Name, f.ProcessLines)
		}
	}
}

// TestTheLaterReleasesFollowTheChangelog: 3.10-3.13 behave as 3.9 (the
// Enterprise history branch has 3.9.3's plugin-server code); 3.8.0 answers
// 500 when a ProtoBuf call fails (Kong commit 5a2f2d5723), 3.14.0.0 for
// every call; 3.15.0.0 makes an unlicensed Admin API
// read-only.
func TestTheLaterReleasesFollowTheChangelog(t *testing.T) {
	v39, _ := ForVersion("3.9.1.2")
	for version, want := range map[string]struct {
		failed FailedRPC
		admin  UnlicensedAdmin
	}{
		"3.4.1.0": {SkipPlugin, Writable}, "3.7.1": {SkipPlugin, Writable}, "3.8.0": {ProtoBuf500, Writable},
		"3.9.1.2": {ProtoBuf500, Writable}, "3.9.3": {ProtoBuf500, Writable},
		"3.10.0.0": {ProtoBuf500, Writable}, "3.13.0.10": {ProtoBuf500, Writable},
		"3.14.0.0": {Answer500, Writable}, "3.14.0.13": {Answer500, Writable},
		"3.15.0.0": {Answer500, ReadOnly}, "3.15.0.4": {Answer500, ReadOnly},
	} {
		f, err := ForVersion(version)
		if err != nil {
			t.Fatal(err)
		}
		if f.FailedRPC != want.failed || f.UnlicensedAdmin != want.admin {
			t.Errorf("%s: failed_rpc %q, unlicensed_admin %q; want %q, %q", version, f.FailedRPC, f.UnlicensedAdmin, want.failed, want.admin)
		}
	}
	for _, version := range []string{"3.10.0.0", "3.13.0.10", "3.14.0.13", "3.15.0.4"} {
		f, _ := ForVersion(version)
		f.Name, f.Describes, f.Enterprise, f.OSS = v39.Name, v39.Describes, v39.Enterprise, v39.OSS
		f.FailedRPC, f.UnlicensedAdmin = v39.FailedRPC, v39.UnlicensedAdmin
		if fmtFamily(f) != fmtFamily(v39) {
			t.Errorf("%s differs from 3.9 in more than the RPC failure and the licence: %+v", version, f)
		}
	}
}

func fmtFamily(f Family) string { return fmt.Sprintf("%+v", f) }

func TestRangesDoNotOverlap(t *testing.T) {
	// Every range's first version must belong to its own family only.
	for _, f := range Families() {
		for _, r := range append(append([]Range(nil), f.Enterprise...), f.OSS...) {
			for _, other := range Families() {
				if other.Name != f.Name && other.Contains(r.From) {
					t.Errorf("%s starts inside %s (and %s)", r.From, other.Name, f.Name)
				}
			}
		}
	}
}

func TestParseRefusesABadTable(t *testing.T) {
	good := `{"families": [{"name": "x", "describes": "x", "enterprise": [], "oss": [{"from": "3.4.0", "before": "3.5.0"}],
		"reuse": "seq", "seq_source": "per_worker", "on_closed": "wipe_local", "reset_handlers": "none",
		"recovery_log": "warn", "started_line": false, "not_ready_gate": true, "process_lines": "3.4",
		"failed_rpc": "skip_plugin", "source_lines": "oss-3.4.0", "unlicensed_admin": "writable"}],
		"msgpack_recovery": [{"recovery": "wipe_local", "enterprise": [], "oss": [{"from": "3.4.0", "before": "3.5.0"}]}]}`
	if _, _, err := parse([]byte(good)); err != nil {
		t.Fatalf("a good table was refused: %v", err)
	}
	bad := map[string]string{
		"unknown reuse":               strings.Replace(good, `"reuse": "seq"`, `"reuse": "uuid"`, 1),
		"misspelt column":             strings.Replace(good, `"started_line"`, `"start_line"`, 1),
		"unknown handlers":            strings.Replace(good, `"reset_handlers": "none"`, `"reset_handlers": "all"`, 1),
		"wipe without events":         strings.Replace(good, `"on_closed": "wipe_local"`, `"on_closed": "post_event"`, 1),
		"empty range":                 strings.Replace(good, `"before": "3.5.0"`, `"before": "3.4.0"`, 1),
		"four-part oss range":         strings.Replace(good, `"from": "3.4.0"`, `"from": "3.4.0.0"`, 1),
		"no families":                 `{"families": []}`,
		"unknown failed_rpc":          strings.Replace(good, `"failed_rpc": "skip_plugin"`, `"failed_rpc": "retry"`, 1),
		"unknown source_lines":        strings.Replace(good, `"source_lines": "oss-3.4.0"`, `"source_lines": "3.4.0"`, 1),
		"no unlicensed_admin":         strings.Replace(good, `, "unlicensed_admin": "writable"`, ``, 1),
		"unknown msgpack":             strings.Replace(good, `"recovery": "wipe_local"`, `"recovery": "retry"`, 1),
		"release without msgpack row": strings.Replace(good, `"oss": [{"from": "3.4.0", "before": "3.5.0"}]}]}`, `"oss": [{"from": "3.4.1", "before": "3.5.0"}]}]}`, 1),
	}
	for name, table := range bad {
		if _, _, err := parse([]byte(table)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestForModelPicksTheFirstFamilyOfTheModel(t *testing.T) {
	for model, want := range map[reuse.Model]string{reuse.Seq: "3.4-seq", reuse.Key: "ee-key-bug", reuse.PluginID: "plugin-id"} {
		if f, err := ForModel(model); err != nil || f.Name != want {
			t.Errorf("ForModel(%s) = %q, %v; want %q", model, f.Name, err, want)
		}
	}
}

// TestMsgPackRecoveryPerRelease pins the mp_rpc.lua handle_event each
// release runs: read from Kong's tags (3.4.0, 3.5.0, 3.6.0, 3.7.0, 3.9.0)
// and the Enterprise master's history (see msgpack_recovery_comment).
func TestMsgPackRecoveryPerRelease(t *testing.T) {
	cases := map[string]MsgPackRecovery{
		"3.4.0": MsgPackWipeLocal, "3.4.2": MsgPackWipeLocal, "3.4.0.0": MsgPackWipeLocal,
		"3.5.0": MsgPackPostEvent, "3.6.1": MsgPackPostEvent,
		"3.4.1.0": MsgPackPostEvent, "3.4.2.1": MsgPackPostEvent, "3.5.0.1": MsgPackPostEvent,
		// Enterprise 901955459b, listed under 3.4.3.1, 3.5.0.2 and 3.6.0.0
		"3.4.3.1": MsgPackResetInstance, "3.4.3.6": MsgPackResetInstance, "3.5.0.2": MsgPackResetInstance,
		"3.6.0.0": MsgPackResetInstance, "3.7.0": MsgPackResetInstance, "3.8.1.0": MsgPackResetInstance,
		"3.9.0": MsgPackResetInstance, "3.9.1.1": MsgPackResetInstance,
		"3.10.0.0": MsgPackResetInstance, "3.15.0.4": MsgPackResetInstance,
	}
	for version, want := range cases {
		f, err := ForVersion(version)
		if err != nil {
			t.Fatal(err)
		}
		if f.MsgPack != want {
			t.Errorf("%s: %q, want %q", version, f.MsgPack, want)
		}
	}
	if f, _ := ForModel(reuse.Key); f.MsgPack != MsgPackPostEvent {
		t.Errorf("ForModel(key) = %q, want the family's first release's", f.MsgPack)
	}
}
