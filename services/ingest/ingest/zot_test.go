package ingest

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"testing"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// zotBinary are the headers of Zot's HTTP sink, which sends binary-mode
// CloudEvents.
func zotBinary(auth, typ string) http.Header {
	return hdr("Authorization", auth, "Content-Type", "application/json", "Ce-Specversion", "1.0",
		"Ce-Id", "6f3c1e0a-2c4b-4d7e-9a1b-2f3c4d5e6f70", "Ce-Source", "zotregistry.dev", "Ce-Type", typ,
		"Ce-Time", "2025-06-01T10:00:00.123456789Z")
}

func TestZotWebhook(t *testing.T) {
	t.Parallel()
	build := func(t *testing.T, pub Publisher) *Server {
		z, err := NewZot(ZotConfig{Token: "zot-token", Username: "zot", Password: "zot-pass", RegistryHost: "zot.example.com:5000"})
		if err != nil {
			t.Fatal(err)
		}
		return newFormatServer(t, pub, nil, z)
	}
	data := fixture(t, "zot/image_updated_data.json")
	cases := []webhookCase{
		{
			name: "binary mode, Basic auth", path: "/webhooks/zot", body: data, header: zotBinary(basic("zot", "zot-pass"), ZotImageUpdated),
			wantStatus: http.StatusOK,
			check: func(t *testing.T, _ *httptest.ResponseRecorder, events []*customsv1.Event) {
				evt := onePush(t, events)
				wantArtifact(t, evt, "zot.example.com:5000", "team/app", testDigest, ociManifest, "v1.2.3")
				if p := evt.GetPushed(); p.GetSourceEventId() != "6f3c1e0a-2c4b-4d7e-9a1b-2f3c4d5e6f70" || p.GetSize() == 0 {
					t.Fatalf("pushed = %v", p)
				}
			},
		},
		{
			name: "structured mode, Bearer auth", path: "/webhooks/zot", body: fixture(t, "zot/image_updated.json"),
			header: hdr("Authorization", "Bearer zot-token", "Content-Type", CloudEventsJSON), wantStatus: http.StatusOK,
			check: func(t *testing.T, _ *httptest.ResponseRecorder, events []*customsv1.Event) {
				wantArtifact(t, onePush(t, events), "zot.example.com:5000", "team/app", testDigest, ociManifest, "v1.2.3")
			},
		},
		{
			name: "image deleted is ignored", path: "/webhooks/zot", body: fixture(t, "zot/image_deleted.json"),
			header: hdr("Authorization", "Bearer zot-token", "Content-Type", CloudEventsJSON), wantStatus: http.StatusAccepted,
			check: func(t *testing.T, rec *httptest.ResponseRecorder, _ []*customsv1.Event) {
				wantIgnored(t, rec, "zotregistry.image.deleted")
			},
		},
		{
			name: "repository created is ignored", path: "/webhooks/zot", body: fixture(t, "zot/repository_created.json"),
			header: hdr("Authorization", "Bearer zot-token", "Content-Type", CloudEventsJSON), wantStatus: http.StatusAccepted,
		},
		{
			name: "no digest", path: "/webhooks/zot", body: fixture(t, "zot/no_digest.json"),
			header: hdr("Authorization", "Bearer zot-token", "Content-Type", CloudEventsJSON), wantStatus: http.StatusBadRequest,
			check: func(t *testing.T, rec *httptest.ResponseRecorder, _ []*customsv1.Event) {
				wantReason(t, rec, "no digest")
			},
		},
		{
			name: "binary mode without data", path: "/webhooks/zot", body: nil, header: zotBinary("Bearer zot-token", ZotImageUpdated),
			wantStatus: http.StatusBadRequest,
		},
		{
			name: "wrong password", path: "/webhooks/zot", body: data, header: zotBinary(basic("zot", "nope"), ZotImageUpdated),
			wantStatus: http.StatusForbidden,
		},
		{
			name: "wrong token", path: "/webhooks/zot", body: data, header: zotBinary("Bearer nope", ZotImageUpdated),
			wantStatus: http.StatusForbidden,
		},
		{
			name: "no credentials", path: "/webhooks/zot", body: data, header: zotBinary("", ZotImageUpdated),
			wantStatus: http.StatusUnauthorized,
		},
		{
			name: "not a CloudEvent", path: "/webhooks/zot", body: []byte(`{"name":"team/app"}`),
			header: hdr("Authorization", "Bearer zot-token", "Content-Type", "text/plain"), wantStatus: http.StatusUnsupportedMediaType,
		},
	}
	runWebhookCases(t, build, cases)
}

func TestNewZotNeedsRegistryHost(t *testing.T) {
	t.Parallel()
	if _, err := NewZot(ZotConfig{Token: "t"}); err == nil {
		t.Fatal("NewZot without a registry host succeeded")
	}
	if _, err := NewZot(ZotConfig{RegistryHost: "zot:5000"}); err == nil {
		t.Fatal("NewZot without credentials succeeded")
	}
}

func FuzzZot(f *testing.F) {
	seedFuzz(f, "zot")
	p := zotParser{host: "zot.example.com"}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := p.parse(hdr("Content-Type", CloudEventsJSON), body)
		checkParsed(t, got, err)
		got, err = p.parse(zotBinary("", ZotImageUpdated), body)
		checkParsed(t, got, err)
	})
}
