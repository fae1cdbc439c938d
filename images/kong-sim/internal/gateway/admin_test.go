package gateway

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestAnUnlicensedAdminAPIIsReadOnlyFrom315: 3.15.0.0's changelog (breaking)
// makes the Admin API of a node without a licence read-only, /licenses and
// /keyring/* aside; earlier releases, open source and a licensed node write.
func TestAnUnlicensedAdminAPIIsReadOnlyFrom315(t *testing.T) {
	for _, c := range []struct {
		version, licence string
		readOnly         bool
	}{
		{"3.15.0.0", "", true}, {"3.15.0.4", "  ", true},
		{"3.15.0.0", `{"license":{"payload":"x"}}`, false},
		{"3.14.0.13", "", false}, {"3.10.0.0", "", false}, {"3.9.3", "", false},
	} {
		g, _ := workersOf(t, c.version, 1, "", false)
		if got := g.adminReadOnly(c.licence); got != c.readOnly {
			t.Errorf("%s, licence %q: read-only %v, want %v", c.version, c.licence, got, c.readOnly)
		}
	}
}

func TestTheReadOnlyAdminAPIRefusesWritesButNotReadsOrTheLicence(t *testing.T) {
	g, _ := workersOf(t, "3.15.0.0", 1, "", false)
	reached := 0
	handler := g.readOnly(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached++ }))
	for _, c := range []struct {
		method, path string
		refused      bool
	}{
		{"POST", "/config", true}, {"PUT", "/services/x", true}, {"DELETE", "/plugins/x", true},
		{"PATCH", "/routes/x", true}, {"GET", "/", false}, {"GET", "/status", false},
		{"POST", "/licenses", false}, {"PUT", "/licenses/abc", false},
		{"POST", "/keyring/recover", false}, {"POST", "/keyring/import/raw", false},
	} {
		before := reached
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		refused := rec.Code == http.StatusForbidden && reached == before
		if refused != c.refused {
			t.Errorf("%s %s: %d, refused %v, want %v", c.method, c.path, rec.Code, refused, c.refused)
		}
		if refused && !strings.Contains(rec.Body.String(), "read-only without a license") {
			t.Errorf("%s %s: the refusal does not say why: %s", c.method, c.path, rec.Body.String())
		}
	}
}

// TestANode315WithoutALicenceRefusesPostConfig: the wiring, end to end: the
// reload scenario's POST /config on 3.15 needs KONG_LICENSE_DATA.
func TestANode315WithoutALicenceRefusesPostConfig(t *testing.T) {
	for licence, want := range map[string]int{"": http.StatusForbidden, `{"license":{}}`: http.StatusCreated} {
		t.Setenv("KONG_LICENSE_DATA", licence)
		n := startNode(t, "3.15.0.0", 1)
		if status, body := n.postConfig(t, "application/x-yaml", []byte(reloadKongYML("second"))); status != want {
			t.Errorf("licence %q: POST /config answered %d %s, want %d", licence, status, body, want)
		}
	}
}
