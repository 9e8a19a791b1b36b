package ingest

import (
	"net/http"
	"net/http/httptest"
	"testing"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

func TestCloudEventsWebhook(t *testing.T) {
	t.Parallel()
	build := func(t *testing.T, pub Publisher) *Server {
		c, err := NewCloudEvents(CloudEventsConfig{Token: "ce-token"})
		if err != nil {
			t.Fatal(err)
		}
		return newFormatServer(t, pub, nil, c)
	}
	structured := func() http.Header { return hdr("Authorization", "Bearer ce-token", "Content-Type", CloudEventsJSON) }
	binary := func(typ string) http.Header {
		return hdr("Authorization", "Bearer ce-token", "Content-Type", "application/json", "Ce-Specversion", "1.0",
			"Ce-Id", "build-77", "Ce-Source", "https://ci.example.com/acme/app", "Ce-Type", typ, "Ce-Time", "2025-06-01T10:00:00Z")
	}
	cases := []webhookCase{
		{
			name: "structured mode", path: "/webhooks/cloudevents", body: fixture(t, "cloudevents/customs_pushed.json"), header: structured(),
			wantStatus: http.StatusOK,
			check: func(t *testing.T, _ *httptest.ResponseRecorder, events []*customsv1.Event) {
				evt := onePush(t, events)
				wantArtifact(t, evt, "registry.example.com", "team/app", testDigest, ociManifest, "v1.2.3")
				if p := evt.GetPushed(); p.GetSourceEventId() != "https://ci.example.com/acme/app|build-881-1" || p.GetActor() != "ci-bot" {
					t.Fatalf("pushed = %v, want source and id as the dedup key", p)
				}
			},
		},
		{
			name: "structured mode, data_base64", path: "/webhooks/cloudevents", body: fixture(t, "cloudevents/customs_pushed_base64.json"), header: structured(),
			wantStatus: http.StatusOK,
			check: func(t *testing.T, _ *httptest.ResponseRecorder, events []*customsv1.Event) {
				wantArtifact(t, onePush(t, events), "registry.example.com", "team/app", testDigest, "", "v1.2.3")
			},
		},
		{
			name: "binary mode", path: "/webhooks/cloudevents", body: fixture(t, "cloudevents/customs_pushed_data.json"), header: binary(CustomsPushedType),
			wantStatus: http.StatusOK,
			check: func(t *testing.T, _ *httptest.ResponseRecorder, events []*customsv1.Event) {
				evt := onePush(t, events)
				wantArtifact(t, evt, "registry.example.com", "team/app", testDigest, ociManifest, "v1.2.3")
				if evt.GetOccurredAt().AsTime().Year() != 2025 {
					t.Fatalf("occurred_at = %v, want ce-time", evt.GetOccurredAt())
				}
			},
		},
		{
			name: "harbor type through the generic receiver", path: "/webhooks/cloudevents", body: fixture(t, "harbor/cloudevents_pushed.json"), header: structured(),
			wantStatus: http.StatusOK,
			check: func(t *testing.T, _ *httptest.ResponseRecorder, events []*customsv1.Event) {
				wantArtifact(t, onePush(t, events), "harbor.example.com", "library/app", testDigest, "", "v1.2.3")
			},
		},
		{
			name: "unknown type is ignored", path: "/webhooks/cloudevents", body: fixture(t, "cloudevents/other_type.json"), header: structured(),
			wantStatus: http.StatusAccepted,
			check: func(t *testing.T, rec *httptest.ResponseRecorder, _ []*customsv1.Event) {
				wantIgnored(t, rec, "com.example.something")
			},
		},
		{
			name: "missing id", path: "/webhooks/cloudevents", body: fixture(t, "cloudevents/missing_id.json"), header: structured(),
			wantStatus: http.StatusBadRequest,
			check:      func(t *testing.T, rec *httptest.ResponseRecorder, _ []*customsv1.Event) { wantReason(t, rec, "id") },
		},
		{name: "wrong specversion", path: "/webhooks/cloudevents", body: fixture(t, "cloudevents/wrong_specversion.json"), header: structured(), wantStatus: http.StatusBadRequest},
		{name: "batch mode", path: "/webhooks/cloudevents", body: []byte("[]"), header: hdr("Authorization", "Bearer ce-token", "Content-Type", CloudEventsBatch), wantStatus: http.StatusUnsupportedMediaType},
		{name: "binary mode with XML data", path: "/webhooks/cloudevents", body: []byte("<x/>"), header: func() http.Header {
			h := binary(CustomsPushedType)
			h.Set("Content-Type", "application/xml")
			return h
		}(), wantStatus: http.StatusBadRequest},
		{name: "binary mode, bad time", path: "/webhooks/cloudevents", body: fixture(t, "cloudevents/customs_pushed_data.json"), header: func() http.Header {
			h := binary(CustomsPushedType)
			h.Set("Ce-Time", "yesterday")
			return h
		}(), wantStatus: http.StatusBadRequest},
		{name: "no token", path: "/webhooks/cloudevents", body: fixture(t, "cloudevents/customs_pushed.json"), wantStatus: http.StatusUnauthorized},
		{name: "wrong token", path: "/webhooks/cloudevents", body: fixture(t, "cloudevents/customs_pushed.json"), header: hdr("Authorization", "Bearer x"), wantStatus: http.StatusForbidden},
	}
	runWebhookCases(t, build, cases)
}

func FuzzCloudEvents(f *testing.F) {
	seedFuzz(f, "cloudevents")
	c, err := NewCloudEvents(CloudEventsConfig{Token: "t"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, h := range []http.Header{
			hdr("Content-Type", CloudEventsJSON),
			hdr("Content-Type", "application/json", "Ce-Specversion", "1.0", "Ce-Id", "1", "Ce-Source", "s", "Ce-Type", CustomsPushedType),
		} {
			req := httptest.NewRequest(http.MethodPost, "/webhooks/cloudevents", nil)
			req.Header = h
			p, err := c.Parse(req, body)
			checkParsed(t, p, err)
		}
	})
}
