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
