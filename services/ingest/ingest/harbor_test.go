package ingest

import (
	"net/http"
	"net/http/httptest"
	"testing"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

const harborAuth = "Bearer harbor-s3cret"

func TestHarborWebhook(t *testing.T) {
	t.Parallel()
	build := func(t *testing.T, pub Publisher) *Server {
		h, err := NewHarbor(HarborConfig{AuthHeader: harborAuth})
		if err != nil {
			t.Fatal(err)
		}
		return newFormatServer(t, pub, staticResolver(), h)
	}
	auth := func(kv ...string) http.Header {
		return hdr(append([]string{"Authorization", harborAuth, "Content-Type", "application/json"}, kv...)...)
	}
	cases := []webhookCase{
		{
			name: "default format push", path: "/webhooks/harbor", body: fixture(t, "harbor/push_artifact.json"), header: auth(),
			wantStatus: http.StatusOK,
			check: func(t *testing.T, _ *httptest.ResponseRecorder, events []*customsv1.Event) {
				evt := onePush(t, events)
				wantArtifact(t, evt, "harbor.example.com", "library/app", testDigest, ociManifest, "v1.2.3")
				if p := evt.GetPushed(); p.GetSource() != "harbor" || p.GetActor() != "admin" || p.GetSourceEventId() != "" {
					t.Fatalf("pushed = %v", p)
				}
				if evt.GetOccurredAt().GetSeconds() != 1680502375 {
					t.Fatalf("occurred_at = %v, want occur_at", evt.GetOccurredAt())
				}
			},
		},
		{
			name: "push by digest has no tag", path: "/webhooks/harbor", body: fixture(t, "harbor/push_artifact_by_digest.json"), header: auth(),
			wantStatus: http.StatusOK,
			check: func(t *testing.T, _ *httptest.ResponseRecorder, events []*customsv1.Event) {
				wantArtifact(t, onePush(t, events), "harbor.example.com", "library/app", testDigest, ociManifest, "")
			},
		},
		{
			name: "cloudevents format push", path: "/webhooks/harbor", body: fixture(t, "harbor/cloudevents_pushed.json"),
			header: hdr("Authorization", harborAuth, "Content-Type", "application/cloudevents+json"), wantStatus: http.StatusOK,
			check: func(t *testing.T, _ *httptest.ResponseRecorder, events []*customsv1.Event) {
				evt := onePush(t, events)
				wantArtifact(t, evt, "harbor.example.com", "library/app", testDigest, ociManifest, "v1.2.3")
				if p := evt.GetPushed(); p.GetSourceEventId() != "4b2f89a6-548d-4c12-9993-a1f5790b97d2" || p.GetActor() != "admin" {
					t.Fatalf("pushed = %v, want the CloudEvent id and operator", p)
				}
			},
		},
		{
			name: "delete is ignored", path: "/webhooks/harbor", body: fixture(t, "harbor/delete_artifact.json"), header: auth(),
			wantStatus: http.StatusAccepted,
			check: func(t *testing.T, rec *httptest.ResponseRecorder, _ []*customsv1.Event) {
				wantIgnored(t, rec, "DELETE_ARTIFACT")
			},
		},
		{
			name: "scan completed is ignored", path: "/webhooks/harbor", body: fixture(t, "harbor/scanning_completed.json"), header: auth(),
			wantStatus: http.StatusAccepted,
		},
		{
			name: "cloudevents delete is ignored", path: "/webhooks/harbor", body: fixture(t, "harbor/cloudevents_deleted.json"), header: auth(),
			wantStatus: http.StatusAccepted,
			check: func(t *testing.T, rec *httptest.ResponseRecorder, _ []*customsv1.Event) {
				wantIgnored(t, rec, "harbor.artifact.deleted")
			},
		},
		{
			name: "missing Authorization", path: "/webhooks/harbor", body: fixture(t, "harbor/push_artifact.json"),
			wantStatus: http.StatusUnauthorized,
		},
		{
			name: "wrong Authorization", path: "/webhooks/harbor", body: fixture(t, "harbor/push_artifact.json"),
			header: hdr("Authorization", "Bearer guess"), wantStatus: http.StatusForbidden,
		},
		{
			name: "missing digest", path: "/webhooks/harbor", body: fixture(t, "harbor/missing_digest.json"), header: auth(),
			wantStatus: http.StatusBadRequest,
			check: func(t *testing.T, rec *httptest.ResponseRecorder, _ []*customsv1.Event) {
				wantReason(t, rec, "missing digest")
			},
		},
		{
			name: "bad resource_url", path: "/webhooks/harbor", body: fixture(t, "harbor/bad_resource_url.json"), header: auth(),
			wantStatus: http.StatusBadRequest,
		},
		{
			name: "no resources", path: "/webhooks/harbor", body: fixture(t, "harbor/no_resources.json"), header: auth(),
			wantStatus: http.StatusBadRequest,
		},
		{
			name: "not JSON", path: "/webhooks/harbor", body: []byte("type=PUSH_ARTIFACT"), header: auth(),
			wantStatus: http.StatusBadRequest,
		},
		{
			name: "no type", path: "/webhooks/harbor", body: []byte(`{"event_data":{}}`), header: auth(),
			wantStatus: http.StatusBadRequest,
		},
	}
	runWebhookCases(t, build, cases)
}

func TestHarborRegistryHostOverride(t *testing.T) {
	t.Parallel()
	h, err := NewHarbor(HarborConfig{AuthHeader: "x", RegistryHost: "harbor.internal:8443"})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/webhooks/harbor", nil)
	p, err := h.Parse(req, fixture(t, "harbor/push_artifact.json"))
	if err != nil || len(p.Pushes) != 1 || p.Pushes[0].Artifact.GetRegistry() != "harbor.internal:8443" {
		t.Fatalf("Parse = %+v, %v; want the configured host", p, err)
	}
}

func FuzzHarbor(f *testing.F) {
	seedFuzz(f, "harbor")
	h, err := NewHarbor(HarborConfig{AuthHeader: "x"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/webhooks/harbor", nil)
		p, err := h.Parse(req, body)
		checkParsed(t, p, err)
		req.Header.Set("Content-Type", CloudEventsJSON)
		p, err = h.Parse(req, body)
		checkParsed(t, p, err)
	})
}
