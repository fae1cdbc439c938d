package reuse

import "testing"

const thisPlugin = "6f2c5a5e-0d3a-5c1b-9f8e-3c1f0d2b7a11"

func TestReusesFollowsEachModel(t *testing.T) {
	running := Conf{Seq: 7, Key: "plugins:example-plugin::::default", PluginID: thisPlugin}
	sameSeq := Conf{Seq: 7, Key: running.Key, PluginID: thisPlugin}
	otherSeq := Conf{Seq: 8, Key: running.Key, PluginID: thisPlugin}
	cases := []struct {
		model     Model
		requested Conf
		uuid      string
		want      bool
	}{
		{Seq, sameSeq, thisPlugin, true},
		{Seq, otherSeq, thisPlugin, false},
		{Seq, sameSeq, "another-plugin", true}, // seq alone decides
		{Key, sameSeq, thisPlugin, false},      // the bug: a cache key is never a UUID
		{Key, otherSeq, thisPlugin, false},
		{PluginID, sameSeq, thisPlugin, true},
		{PluginID, otherSeq, thisPlugin, true}, // seq is ignored
		{PluginID, sameSeq, "another-plugin", false},
		{SeqAndPluginID, sameSeq, thisPlugin, true},
		{SeqAndPluginID, otherSeq, thisPlugin, false},
		{SeqAndPluginID, sameSeq, "another-plugin", false},
	}
	for _, c := range cases {
		if got := c.model.Reuses(running, c.requested, c.uuid); got != c.want {
			t.Errorf("%s.Reuses(seq %d, uuid %s) = %v, want %v", c.model, c.requested.Seq, c.uuid, got, c.want)
		}
	}
}

func TestKeyModelReusesWhenKeyHappensToBeTheUUID(t *testing.T) {
	// Guards the comparison itself: Key compares __key__ with the UUID.
	running := Conf{Key: thisPlugin}
	if !Key.Reuses(running, Conf{}, thisPlugin) {
		t.Fatal("Key model must compare conf.__key__ with the plugin UUID")
	}
}

func TestForVersion(t *testing.T) {
	cases := map[string]Model{
		"3.4.0.0": Seq, "3.4.0": Seq, "3.4.2": Seq, "3.5.0": Seq,
		"3.4.1.0": Key, "3.4.1.1": Key, "3.4.2.0": Key, "3.4.2.1": Key, "3.5.0.0": Key, "3.5.0.1": Key,
		"3.4.3.1": PluginID, "3.4.3.12": PluginID, "3.5.0.2": PluginID, "3.5.0.7": PluginID,
		"3.6.0.0": PluginID, "3.6.1.4": PluginID, "3.6.0": PluginID, "3.6.1": PluginID,
		"3.7.0.0": SeqAndPluginID, "3.9.1.1": SeqAndPluginID, "3.7.1": SeqAndPluginID, "3.10.0.0": SeqAndPluginID,
	}
	for version, want := range cases {
		got, err := ForVersion(version)
		if err != nil || got != want {
			t.Errorf("ForVersion(%q) = %q, %v; want %q", version, got, err, want)
		}
	}
}

func TestForVersionRefusesUnknownVersions(t *testing.T) {
	for _, version := range []string{"", "latest", "3.3.1.0", "3.3.0", "3.4.3.0", "3.5.1", "2.8.4.1", "3.4"} {
		if model, err := ForVersion(version); err == nil {
			t.Errorf("ForVersion(%q) = %q, want an error", version, model)
		}
	}
}

func TestParseModel(t *testing.T) {
	for _, m := range Models {
		if got, err := ParseModel(string(m)); err != nil || got != m {
			t.Errorf("ParseModel(%q) = %q, %v", m, got, err)
		}
	}
	if _, err := ParseModel("cache_key"); err == nil {
		t.Error("ParseModel accepted an unknown name")
	}
}

func TestSeqCounterScope(t *testing.T) {
	if Seq.NodeWideSeq() {
		t.Error("the seq model used a per-worker counter (plugins_iterator.lua next_seq)")
	}
	for _, m := range []Model{Key, PluginID, SeqAndPluginID} {
		if !m.NodeWideSeq() {
			t.Errorf("%s must use the node-wide counter", m)
		}
	}
}
