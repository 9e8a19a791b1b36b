package promotion

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"
)

// vulnEnvelope wraps a vuln predicate with result into a DSSE envelope, as
// cosign stores it.
func vulnEnvelope(t testing.TB, predicateType, result string) []byte {
	t.Helper()
	stmt := `{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"` + predicateType + `","subject":[],"predicate":{` +
		`"scanner":{"uri":"pkg:github/aquasecurity/trivy","result":` + result + `},"metadata":{"scanFinishedOn":"2026-11-28T10:00:00Z"}}}`
	env, err := json.Marshal(map[string]string{"payloadType": "application/vnd.in-toto+json", "payload": base64.StdEncoding.EncodeToString([]byte(stmt))})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestParseVulnAttestation(t *testing.T) {
	t.Parallel()
	const vulnType = "https://cosign.sigstore.dev/attestation/vuln/v1"
	none := map[string]int{"critical": 0, "high": 0, "medium": 0, "low": 0, "unknown": 0}
	with := func(m map[string]int) map[string]int {
		out := maps.Clone(none)
		maps.Copy(out, m)
		return out
	}
	tests := []struct {
		name    string
		env     []byte
		want    map[string]int
		wantErr string
	}{
		{name: "trivy report", env: vulnEnvelope(t, vulnType, `{"SchemaVersion":2,"Results":[{"Vulnerabilities":[{"Severity":"CRITICAL"},{"Severity":"HIGH"},{"Severity":"HIGH"}]},{"Vulnerabilities":[{"Severity":"NEGLIGIBLE"}]}]}`),
			want: with(map[string]int{"critical": 1, "high": 2, "unknown": 1})},
		{name: "clean trivy report", env: vulnEnvelope(t, vulnType, `{"SchemaVersion":2,"Results":[{"Target":"alpine"}]}`), want: none},
		{name: "customs counts", env: vulnEnvelope(t, vulnType, `{"counts":{"critical":0,"high":2,"medium":5},"findings":null,"findingsTruncated":false}`),
			want: with(map[string]int{"high": 2, "medium": 5})},
		{name: "customs findings only", env: vulnEnvelope(t, vulnType, `{"findings":[{"severity":5},{"severity":2}]}`),
			want: with(map[string]int{"critical": 1, "low": 1})},
		{name: "truncated findings", env: vulnEnvelope(t, vulnType, `{"findings":[{"severity":5}],"findingsTruncated":true}`), wantErr: "truncated"},
		{name: "negative count", env: vulnEnvelope(t, vulnType, `{"counts":{"critical":-1}}`), wantErr: "negative"},
		{name: "other predicate", env: vulnEnvelope(t, "https://cyclonedx.org/bom", `{"SchemaVersion":2}`), wantErr: "is not"},
		{name: "no result", env: vulnEnvelope(t, vulnType, `null`), wantErr: "no scanner result"},
		{name: "unknown result", env: vulnEnvelope(t, vulnType, `{"matches":[]}`), wantErr: "neither"},
		{name: "result not an object", env: vulnEnvelope(t, vulnType, `"x"`), wantErr: "result"},
		{name: "payload not base64", env: []byte(`{"payload":"!!"}`), wantErr: "DSSE payload"},
		{name: "not an envelope", env: []byte(`[`), wantErr: "DSSE envelope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, finished, err := parseVulnAttestation(tc.env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("counts = %v, want %v", got, tc.want)
			}
			if !finished.Equal(time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)) {
				t.Errorf("scan finished on %v", finished)
			}
		})
	}
	if _, _, err := parseVulnAttestation(vulnEnvelope(t, vulnType, `{"findings":[],"findingsTruncated":true}`)); !errors.Is(err, errIncompleteScan) {
		t.Errorf("truncated findings: %v, want errIncompleteScan", err)
	}
}

// The newest complete attestation wins; unreadable ones are passed over.
func TestVerificationKeepsNewestScan(t *testing.T) {
	t.Parallel()
	payload := func(b []byte) func() ([]byte, error) { return func() ([]byte, error) { return b, nil } }
	older := vulnEnvelope(t, "https://cosign.sigstore.dev/attestation/vuln/v1", `{"counts":{"critical":1}}`)
	newer := vulnEnvelope(t, "https://cosign.sigstore.dev/attestation/vuln/v1", `{"counts":{"low":1}}`)
	// Re-date the newer one.
	var env struct{ Payload string }
	_ = json.Unmarshal(newer, &env)
	body, _ := base64.StdEncoding.DecodeString(env.Payload)
	body = []byte(strings.Replace(string(body), "2026-11-28T10:00:00Z", "2026-11-29T10:00:00Z", 1))
	newer, _ = json.Marshal(map[string]string{"payload": base64.StdEncoding.EncodeToString(body)})

	var v verification
	v.addScan(payload(newer), "k2")
	v.addScan(payload(older), "k1")
	v.addScan(payload([]byte("garbage")), "k3")
	if v.Scan == nil || v.Scan.Key != "k2" || v.Scan.Counts["low"] != 1 || v.Scan.Counts["critical"] != 0 {
		t.Errorf("kept %+v, want the newer scan by k2", v.Scan)
	}
}

func FuzzParseVulnAttestation(f *testing.F) {
	f.Add(vulnEnvelope(f, "https://cosign.sigstore.dev/attestation/vuln/v1", `{"SchemaVersion":2,"Results":[{"Vulnerabilities":[{"Severity":"HIGH"}]}]}`))
	f.Add(vulnEnvelope(f, "https://cosign.sigstore.dev/attestation/vuln/v1", `{"counts":{"high":1},"findings":[]}`))
	f.Add([]byte(`{"payload":"e30="}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, env []byte) {
		counts, _, err := parseVulnAttestation(env)
		if err != nil {
			return
		}
		for sev, n := range counts {
			if n < 0 {
				t.Fatalf("negative count %d for %s", n, sev)
			}
		}
	})
}
