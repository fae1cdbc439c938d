// Package release is kong-sim's table of Kong release families: for each
// family, every behaviour the stand-in must reproduce (how instances are
// reused, where __seq__ comes from, what happens when the plugin server
// loses an instance, which log lines exist). The table is releases.json,
// embedded here and read by tests/test_releases.py too, so the Go stand-in
// and the Python version table cannot drift apart unnoticed.
package release

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/kong-plugin-matrix/kong-sim/internal/reuse"
)

//go:embed releases.json
var releasesJSON []byte

// SeqSource says where a worker's plugins iterator takes __seq__ from.
type SeqSource string

const (
	// PerWorker is a Lua variable of each worker, counting from 0.
	PerWorker SeqSource = "per_worker"
	// Node is the shm counter shared by the workers (ngx.shared.kong:incr),
	// so the first value is 1 and no two workers share one.
	Node SeqSource = "node"
)

// OnClosed is what a worker does when an event fails with "closed" or
// "no plugin instance", before it retries.
type OnClosed string

const (
	// WipeLocal forgets this worker's entry for the plugin.
	WipeLocal OnClosed = "wipe_local"
	// PostEvent posts a reset_instances worker event and wipes nothing itself.
	PostEvent OnClosed = "post_event"
	// WipeLocalAndPostEvent forgets this worker's entries of the plugin at
	// once, then posts the event.
	WipeLocalAndPostEvent OnClosed = "wipe_local_and_post_event"
)

// ResetHandlers says which workers run the reset_instances event handler.
type ResetHandlers string

const (
	// NoHandlers: no event is posted, nobody handles one.
	NoHandlers ResetHandlers = "none"
	// Worker0 only: plugin_servers.start() returns before it registers the
	// handler in every other worker.
	Worker0 ResetHandlers = "worker0"
	// Worker0Raises: open-source 3.5.0 registers it in worker 0 only, and it
	// raises before it resets anything (reset_instance keys by
	// kong.plugin.get_id(), nil in an event handler): a lost instance is
	// retried for ever (kong-sim: until the request ends).
	Worker0Raises ResetHandlers = "worker0_raises"
	// EveryWorker: 3.9 registers the handler in every worker.
	EveryWorker ResetHandlers = "every_worker"
)

// RecoveryLog is how the recovery from a lost instance is logged.
type RecoveryLog string

const (
	// Warn logs the error text once at [warn].
	Warn RecoveryLog = "warn"
	// ErrorThenWarn logs it at [error], then again at [warn] before the retry.
	ErrorThenWarn RecoveryLog = "error_then_warn"
	// ErrorLowercased logs it lower-cased at [error] and nothing at [warn].
	ErrorLowercased RecoveryLog = "error_lowercased"
)

// ProcessLines names the wording of the plugin-server process lines.
type ProcessLines string

const (
	// Lines34 is 3.4-3.8: `Starting NAME`, `Exiting: ...`.
	Lines34 ProcessLines = "3.4"
	// Lines39 is 3.9+: `[pluginserver] starting pluginserver process for NAME`, ...
	Lines39 ProcessLines = "3.9"
)

// FailedRPC is what a request gets when an RPC call to the plugin server
// fails for any other reason than a lost instance (connection refused while
// the server is down, a read error).
type FailedRPC string

const (
	// SkipPlugin: handle_event logs the error and returns; the request goes
	// on without the plugin (3.4-3.13).
	SkipPlugin FailedRPC = "skip_plugin"
	// ProtoBuf500: pb_rpc.lua logs `pluginserver error: ERR` and answers
	// 500 (kong.response.error); mp_rpc.lua still logs the error and goes
	// on (Kong commit 5a2f2d5723, "handle socket timeout", from 3.8.0).
	ProtoBuf500 FailedRPC = "protobuf_500"
	// Answer500: Kong answers 500 (changelog 3.14.0.0: "Fixed external
	// plugin server to properly return 500 error responses when RPC calls
	// fail, instead of silently ignoring the failures").
	Answer500 FailedRPC = "answer_500"
)

// UnlicensedAdmin is the Admin API of an Enterprise node started without
// KONG_LICENSE_DATA.
type UnlicensedAdmin string

const (
	// Writable: free mode up to 3.9, an expired licence from 3.10; either
	// way POST /config works.
	Writable UnlicensedAdmin = "writable"
	// ReadOnly: changelog 3.15.0.0, "Without a configured license, the
	// Admin API is now read-only" (only /licenses and /keyring/* stay
	// writable).
	ReadOnly UnlicensedAdmin = "read_only"
)

// Range is the versions from From (included) to Before (excluded) of one
// edition; both have that edition's number of parts.
type Range struct {
	From   string `json:"from"`
	Before string `json:"before"`
}

// Family is one row of the table: releases that behave alike.
type Family struct {
	Name          string        `json:"name"`
	Describes     string        `json:"describes"`
	Enterprise    []Range       `json:"enterprise"`
	OSS           []Range       `json:"oss"`
	Reuse         reuse.Model   `json:"reuse"`
	SeqSource     SeqSource     `json:"seq_source"`
	OnClosed      OnClosed      `json:"on_closed"`
	ResetHandlers ResetHandlers `json:"reset_handlers"`
	RecoveryLog   RecoveryLog   `json:"recovery_log"`
	StartedLine   bool          `json:"started_line"`
	NotReadyGate  bool          `json:"not_ready_gate"`
	ProcessLines  ProcessLines  `json:"process_lines"`
	FailedRPC     FailedRPC     `json:"failed_rpc"`
	// SourceLines names the source whose line numbers the log lines carry
	// (sourcelines.go).
	SourceLines string `json:"source_lines"`
	// UnlicensedAdmin applies to Enterprise releases only: open source
	// has no licence.
	UnlicensedAdmin UnlicensedAdmin `json:"unlicensed_admin"`

	// MsgPack is how mp_rpc.lua recovers in this release (set by ForVersion
	// and ForModel from the msgpack_recovery table, which does not follow
	// the families).
	MsgPack MsgPackRecovery `json:"-"`
}

// MsgPackRecovery is mp_rpc.lua's handle_event on an error: only a server
// error text containing "no plugin instance" is retried.
type MsgPackRecovery string

const (
	// MsgPackWipeLocal (3.4.0): [warn] the text, reset_instance, retry.
	MsgPackWipeLocal MsgPackRecovery = "wipe_local"
	// MsgPackPostEvent (OSS 3.5.0-3.6.x; EE 3.4.1.0-3.5.x inferred): post a
	// reset_instances event on every error, then [warn] and retry without
	// wiping anything locally.
	MsgPackPostEvent MsgPackRecovery = "post_event"
	// MsgPackResetInstance (3.7+; EE 3.6 inferred): reset_instance as the
	// family does it, [warn], retry.
	MsgPackResetInstance MsgPackRecovery = "reset_instance"
)

// ClaimTimeOutDeletes says whether get_instance_id deletes the claim it
// gave up waiting on ("Could not claim instance_id"), so the next request
// starts its own instance. The commit that added the deletion (Enterprise
// c0596b2a04, open source 349d36edf5: "reset instance triggers
// invalidation") also brought reset_instances_for_plugin, the wipe of
// wipe_local_and_post_event; tags 3.4.0-3.5.0 keep the claim.
func (f Family) ClaimTimeOutDeletes() bool {
	return f.OnClosed == WipeLocalAndPostEvent
}

// msgpackRange is one row of the msgpack_recovery table.
type msgpackRange struct {
	Recovery   MsgPackRecovery `json:"recovery"`
	Enterprise []Range         `json:"enterprise"`
	OSS        []Range         `json:"oss"`
}

type table struct {
	Comment         string         `json:"_comment"`
	Families        []Family       `json:"families"`
	MsgPackComment  string         `json:"msgpack_recovery_comment"`
	MsgPackRecovery []msgpackRange `json:"msgpack_recovery"`
}

// families is the parsed table; a bad table stops the program at start-up
// (and fails every test), never at the first request.
var families, msgpackRows = mustParse(releasesJSON)

// Families returns the table, in release order.
func Families() []Family {
	return append([]Family(nil), families...)
}

func mustParse(data []byte) ([]Family, []msgpackRange) {
	parsed, rows, err := parse(data)
	if err != nil {
		panic("internal/release/releases.json: " + err.Error())
	}
	return parsed, rows
}

func parse(data []byte) ([]Family, []msgpackRange, error) {
	var t table
	decoder := json.NewDecoder(bytes.NewReader(data))
	decoder.DisallowUnknownFields() // a misspelt column must not read as false
	if err := decoder.Decode(&t); err != nil {
		return nil, nil, err
	}
	if len(t.Families) == 0 {
		return nil, nil, fmt.Errorf("no families")
	}
	for _, f := range t.Families {
		if err := f.validate(); err != nil {
			return nil, nil, fmt.Errorf("family %q: %w", f.Name, err)
		}
	}
	if err := validateMsgPack(t.MsgPackRecovery, t.Families); err != nil {
		return nil, nil, fmt.Errorf("msgpack_recovery: %w", err)
	}
	return t.Families, t.MsgPackRecovery, nil
}

// validateMsgPack checks the rows' values and ranges, and that every
// family's first and last releases have exactly one row.
func validateMsgPack(rows []msgpackRange, fams []Family) error {
	for _, row := range rows {
		switch row.Recovery {
		case MsgPackWipeLocal, MsgPackPostEvent, MsgPackResetInstance:
		default:
			return fmt.Errorf("recovery %q is not one of %s, %s, %s", row.Recovery, MsgPackWipeLocal, MsgPackPostEvent, MsgPackResetInstance)
		}
		for _, r := range row.Enterprise {
			if err := r.validate(4); err != nil {
				return err
			}
		}
		for _, r := range row.OSS {
			if err := r.validate(3); err != nil {
				return err
			}
		}
	}
	for _, f := range fams {
		for _, r := range append(append([]Range(nil), f.Enterprise...), f.OSS...) {
			if n := len(msgpackRowsOf(rows, r.From)); n != 1 {
				return fmt.Errorf("family %q: release %s is in %d rows, want 1", f.Name, r.From, n)
			}
		}
	}
	return nil
}

func msgpackRowsOf(rows []msgpackRange, version string) []MsgPackRecovery {
	var found []MsgPackRecovery
	for _, row := range rows {
		if (Family{Enterprise: row.Enterprise, OSS: row.OSS}).Contains(version) {
			found = append(found, row.Recovery)
		}
	}
	return found
}

// msgpackRecovery is the recovery of version, or of family f's first
// release when the version is not in the table (a reuse-model override).
func msgpackRecovery(version string, f Family) MsgPackRecovery {
	if found := msgpackRowsOf(msgpackRows, version); len(found) == 1 {
		return found[0]
	}
	for _, r := range append(append([]Range(nil), f.Enterprise...), f.OSS...) {
		if found := msgpackRowsOf(msgpackRows, r.From); len(found) == 1 {
			return found[0]
		}
	}
	return MsgPackResetInstance
}

func (f Family) validate() error {
	if _, err := reuse.ParseModel(string(f.Reuse)); err != nil {
		return err
	}
	checks := []struct {
		field string
		value string
		known []string
	}{
		{"seq_source", string(f.SeqSource), []string{string(PerWorker), string(Node)}},
		{"on_closed", string(f.OnClosed), []string{string(WipeLocal), string(PostEvent), string(WipeLocalAndPostEvent)}},
		{"reset_handlers", string(f.ResetHandlers), []string{string(NoHandlers), string(Worker0), string(Worker0Raises), string(EveryWorker)}},
		{"recovery_log", string(f.RecoveryLog), []string{string(Warn), string(ErrorThenWarn), string(ErrorLowercased)}},
		{"process_lines", string(f.ProcessLines), []string{string(Lines34), string(Lines39)}},
		{"failed_rpc", string(f.FailedRPC), []string{string(SkipPlugin), string(ProtoBuf500), string(Answer500)}},
		{"unlicensed_admin", string(f.UnlicensedAdmin), []string{string(Writable), string(ReadOnly)}},
	}
	for _, c := range checks {
		if !contains(c.known, c.value) {
			return fmt.Errorf("%s %q is not one of %s", c.field, c.value, strings.Join(c.known, ", "))
		}
	}
	// A worker that wipes nothing itself must have someone handle its event,
	// or it would retry the same lost instance for ever (as open-source
	// 3.5.0 does, whose handler raises: worker0_raises).
	if (f.OnClosed == WipeLocal) != (f.ResetHandlers == NoHandlers) {
		return fmt.Errorf("on_closed %q does not fit reset_handlers %q", f.OnClosed, f.ResetHandlers)
	}
	if err := validateSourceLines(f.SourceLines); err != nil {
		return err
	}
	for _, r := range f.Enterprise {
		if err := r.validate(4); err != nil {
			return err
		}
	}
	for _, r := range f.OSS {
		if err := r.validate(3); err != nil {
			return err
		}
	}
	return nil
}

func (r Range) validate(parts int) error {
	from, errFrom := parseVersion(r.From)
	before, errBefore := parseVersion(r.Before)
	if errFrom != nil || errBefore != nil || len(from) != parts || len(before) != parts || compare(from, before) >= 0 {
		return fmt.Errorf("range [%s, %s) is not a non-empty range of %d-part versions", r.From, r.Before, parts)
	}
	return nil
}

func contains(list []string, want string) bool {
	for _, s := range list {
		if s == want {
			return true
		}
	}
	return false
}

// Contains reports whether the family holds version (a.b.c.d Enterprise,
// a.b.c open source).
func (f Family) Contains(version string) bool {
	v, err := parseVersion(version)
	if err != nil {
		return false
	}
	ranges := f.OSS
	if len(v) == 4 {
		ranges = f.Enterprise
	}
	for _, r := range ranges {
		from, _ := parseVersion(r.From) // validated when the table was read
		before, _ := parseVersion(r.Before)
		if len(from) == len(v) && compare(v, from) >= 0 && compare(v, before) < 0 {
			return true
		}
	}
	return false
}

// ForVersion is the family of a Kong version. A version the table does not
// hold is an error, so a typo never silently measures the wrong behaviour.
func ForVersion(version string) (Family, error) {
	for _, f := range families {
		if f.Contains(version) {
			f.MsgPack = msgpackRecovery(version, f)
			return f, nil
		}
	}
	return Family{}, fmt.Errorf("no release family known for Kong version %q (known: %s); "+
		"set KONG_SIM_REUSE_MODEL to one of %s to run it anyway", version, knownRanges(), modelNames())
}

// ForModel is the first family whose reuse test is model: what an
// unversioned node with only KONG_SIM_REUSE_MODEL set behaves like.
func ForModel(model reuse.Model) (Family, error) {
	for _, f := range families {
		if f.Reuse == model {
			f.MsgPack = msgpackRecovery("", f)
			return f, nil
		}
	}
	return Family{}, fmt.Errorf("no release family uses reuse model %q", model)
}

func knownRanges() string {
	var parts []string
	for _, f := range families {
		parts = append(parts, f.Name+": "+f.Describes)
	}
	return strings.Join(parts, "; ")
}

func modelNames() string {
	names := make([]string, len(reuse.Models))
	for i, m := range reuse.Models {
		names[i] = string(m)
	}
	return strings.Join(names, ", ")
}

func parseVersion(version string) ([]int, error) {
	fields := strings.Split(version, ".")
	if len(fields) != 3 && len(fields) != 4 {
		return nil, fmt.Errorf("%q is not a version", version)
	}
	parts := make([]int, len(fields))
	for i, field := range fields {
		n, err := strconv.Atoi(field)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%q is not a version", version)
		}
		parts[i] = n
	}
	return parts, nil
}

func compare(a, b []int) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// IsEnterprise reports whether version is spelled like an Enterprise release.
func IsEnterprise(version string) bool {
	return strings.Count(version, ".") == 3
}

// AtLeast reports whether version is min or later, comparing the parts both
// have (3.8.0.0 is at least 3.8.0); a version that does not parse is not.
func AtLeast(version, min string) bool {
	v, errV := parseVersion(version)
	m, errM := parseVersion(min)
	if errV != nil || errM != nil {
		return false
	}
	n := len(m)
	if len(v) < n {
		n = len(v)
	}
	return compare(v[:n], m[:n]) >= 0
}
