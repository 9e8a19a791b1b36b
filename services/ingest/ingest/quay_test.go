package ingest

import (
	"net/http"
	"net/http/httptest"
	"testing"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

const quaySecret = "0123456789abcdef-quay"

func TestQuayWebhook(t *testing.T) {
	t.Parallel()
	build := func(t *testing.T, pub Publisher) *Server {
		q, err := NewQuay(QuayConfig{Secret: quaySecret})
		if err != nil {
			t.Fatal(err)
		}
		return newFormatServer(t, pub, staticResolver(), q)
	}
	url := "/webhooks/quay/" + quaySecret
	cases := []webhookCase{
		{
			name: "push with two tags", path: url, body: fixture(t, "quay/push.json"), wantStatus: http.StatusOK,
			check: func(t *testing.T, _ *httptest.ResponseRecorder, events []*customsv1.Event) {
				if len(events) != 2 {
					t.Fatalf("published %d events, want one per tag", len(events))
				}
				wantArtifact(t, events[0], "quay.io", "mynamespace/repository", testDigest, ociManifest, "latest")
				wantArtifact(t, events[1], "quay.io", "mynamespace/repository", testDigest, ociManifest, "v1.0.0")
				if events[0].GetId() == events[1].GetId() {
					t.Fatal("two tags got the same event id")
				}
			},
		},
		{
			name: "no tags is ignored", path: url, body: fixture(t, "quay/no_tags.json"), wantStatus: http.StatusAccepted,
			check: func(t *testing.T, rec *httptest.ResponseRecorder, _ []*customsv1.Event) {
				wantIgnored(t, rec, "updated_tags")
			},
		},
		{name: "a bad tag refuses the whole request", path: url, body: fixture(t, "quay/bad_tag.json"), wantStatus: http.StatusBadRequest},
		{name: "no docker_url", path: url, body: fixture(t, "quay/no_docker_url.json"), wantStatus: http.StatusBadRequest},
		{name: "wrong secret", path: "/webhooks/quay/0123456789abcdef-nope", body: fixture(t, "quay/push.json"), wantStatus: http.StatusForbidden},
		{name: "no secret", path: "/webhooks/quay", body: fixture(t, "quay/push.json"), wantStatus: http.StatusUnauthorized},
	}
	runWebhookCases(t, build, cases)
}

func FuzzQuay(f *testing.F) {
	seedFuzz(f, "quay")
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := parseQuay(body, "")
		checkParsed(t, p, err)
	})
}
