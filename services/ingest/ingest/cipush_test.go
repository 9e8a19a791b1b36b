package ingest

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

func TestCIPushAPI(t *testing.T) {
	t.Parallel()
	build := func(t *testing.T, pub Publisher) *Server {
		c, err := NewCIPush(CIPushConfig{Token: "ci-token"})
		if err != nil {
			t.Fatal(err)
		}
		return newFormatServer(t, pub, staticResolver(), c)
	}
	auth := hdr("Authorization", "Bearer ci-token", "Content-Type", "application/json")
	cases := []webhookCase{
		{
			name: "full push event fills provenance", path: CIPushPath, body: fixture(t, "ci/push_event.json"), header: auth, wantStatus: http.StatusOK,
			check: func(t *testing.T, _ *httptest.ResponseRecorder, events []*customsv1.Event) {
				evt := onePush(t, events)
				wantArtifact(t, evt, "registry.example.com", "team/app", testDigest, ociManifest, "v1.2.3")
				want := &customsv1.Provenance{
					SourceRepository: "https://github.com/acme/app",
					GitSha:           "0123456789abcdef0123456789abcdef01234567",
					Semver:           "v1.2.3",
					Builder:          "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.2.3",
					BuildUrl:         "https://github.com/acme/app/actions/runs/123456789",
				}
				if diff := cmp.Diff(want, evt.GetPushed().GetProvenance(), protocmp.Transform()); diff != "" {
					t.Fatalf("provenance (-want +got):\n%s", diff)
				}
				if p := evt.GetPushed(); p.GetSource() != "ci" || p.GetSourceEventId() != "123456789-1" || p.GetActor() != "octocat" {
					t.Fatalf("pushed = %v", p)
				}
			},
		},
		{
			name: "digest in the reference only", path: CIPushPath, body: fixture(t, "ci/push_event_minimal.json"), header: auth, wantStatus: http.StatusOK,
			check: func(t *testing.T, _ *httptest.ResponseRecorder, events []*customsv1.Event) {
				evt := onePush(t, events)
				wantArtifact(t, evt, "registry.example.com", "team/app", testDigest, ociManifest, "")
				if evt.GetPushed().GetProvenance() != nil {
					t.Fatal("provenance without any provenance field")
				}
			},
		},
		{name: "bad git sha", path: CIPushPath, body: fixture(t, "ci/bad_git_sha.json"), header: auth, wantStatus: http.StatusBadRequest,
			check: func(t *testing.T, rec *httptest.ResponseRecorder, _ []*customsv1.Event) {
				wantReason(t, rec, "git_sha")
			}},
		{name: "misspelt field", path: CIPushPath, body: fixture(t, "ci/unknown_field.json"), header: auth, wantStatus: http.StatusBadRequest,
			check: func(t *testing.T, rec *httptest.ResponseRecorder, _ []*customsv1.Event) { wantReason(t, rec, "gitsha") }},
		{name: "digest disagrees with reference", path: CIPushPath, body: fixture(t, "ci/digest_mismatch.json"), header: auth, wantStatus: http.StatusBadRequest},
		{name: "reference without registry", path: CIPushPath, body: fixture(t, "ci/no_registry.json"), header: auth, wantStatus: http.StatusBadRequest},
		{name: "bad semver", path: CIPushPath, body: fixture(t, "ci/bad_semver.json"), header: auth, wantStatus: http.StatusBadRequest},
		{name: "build_url not http", path: CIPushPath, body: fixture(t, "ci/bad_build_url.json"), header: auth, wantStatus: http.StatusBadRequest},
		{name: "form body", path: CIPushPath, body: []byte("reference=x"), header: hdr("Authorization", "Bearer ci-token", "Content-Type", "application/x-www-form-urlencoded"), wantStatus: http.StatusUnsupportedMediaType},
		{name: "no token", path: CIPushPath, body: fixture(t, "ci/push_event.json"), wantStatus: http.StatusUnauthorized},
		{name: "wrong token", path: CIPushPath, body: fixture(t, "ci/push_event.json"), header: hdr("Authorization", "Bearer nope"), wantStatus: http.StatusForbidden},
	}
	runWebhookCases(t, build, cases)
}

// TestCIPushKeepsProvenanceApartFromRegistryView checks that a CI push and
// a registry webhook for the same image do not deduplicate into one event,
// which would lose the provenance.
func TestCIPushKeepsProvenanceApartFromRegistryView(t *testing.T) {
	t.Parallel()
	p, err := ParsePushEvent(fixture(t, "ci/push_event.json"))
	if err != nil {
		t.Fatal(err)
	}
	p.SourceEventID = ""
	plain := p
	plain.Provenance = nil
	if PushedEvent("ci", p).GetId() == PushedEvent("dockerhub", plain).GetId() {
		t.Fatal("a CI push with provenance has the id of the same push without it")
	}
	if first, again := PushedEvent("ci", p).GetId(), PushedEvent("ci", p).GetId(); first != again {
		t.Fatal("event id is not deterministic")
	}
}

func FuzzCIPush(f *testing.F) {
	seedFuzz(f, "ci")
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParsePushEvent(body)
		checkParsed(t, Parsed{Pushes: nonEmpty(p)}, err)
		if err == nil && p.Artifact.GetDigest() == "" {
			t.Fatal("CI push accepted without a digest")
		}
	})
}

func nonEmpty(p Push) []Push {
	if p.Artifact == nil {
		return nil
	}
	return []Push{p}
}
