package ingest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

const ghcrSecret = "gh-webhook-s3cret"

func ghcrSign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// ghcrHeaders are the headers GitHub sends, with a valid signature.
func ghcrHeaders(event string, body []byte) http.Header {
	return hdr("X-GitHub-Event", event, "X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958",
		"X-Hub-Signature-256", ghcrSign(ghcrSecret, body), "Content-Type", "application/json", "User-Agent", "GitHub-Hookshot/044aadd")
}

func TestGHCRWebhook(t *testing.T) {
	t.Parallel()
	build := func(t *testing.T, pub Publisher) *Server {
		g, err := NewGHCR(GHCRConfig{Secret: ghcrSecret})
		if err != nil {
			t.Fatal(err)
		}
		return newFormatServer(t, pub, nil, g)
	}
	published := fixture(t, "ghcr/published.json")
	form := []byte("payload=" + url.QueryEscape(string(published)))
	formHeader := ghcrHeaders("registry_package", form)
	formHeader.Set("Content-Type", "application/x-www-form-urlencoded")
	cases := []webhookCase{
		{
			name: "published with tag", path: "/webhooks/ghcr", body: published, header: ghcrHeaders("registry_package", published),
			wantStatus: http.StatusOK,
			check: func(t *testing.T, _ *httptest.ResponseRecorder, events []*customsv1.Event) {
				evt := onePush(t, events)
				wantArtifact(t, evt, "ghcr.io", "acme/app", testDigest, ociManifest, "v1.2.3")
				p := evt.GetPushed()
				if p.GetSourceEventId() != "72d3162e-cc78-11e3-81ab-4c9367dc0958" || p.GetActor() != "octocat" || p.GetSize() != 1234 {
					t.Fatalf("pushed = %v, want the delivery id, sender and manifest size", p)
				}
			},
		},
		{
			name: "untagged, package_url with a stray colon", path: "/webhooks/ghcr", body: fixture(t, "ghcr/published_untagged.json"),
			header: ghcrHeaders("registry_package", fixture(t, "ghcr/published_untagged.json")), wantStatus: http.StatusOK,
			check: func(t *testing.T, _ *httptest.ResponseRecorder, events []*customsv1.Event) {
				wantArtifact(t, onePush(t, events), "ghcr.io", "acme/app", testDigest, ociManifest, "")
			},
		},
		{
			name: "updated, owner in mixed case", path: "/webhooks/ghcr", body: fixture(t, "ghcr/updated.json"),
			header: ghcrHeaders("registry_package", fixture(t, "ghcr/updated.json")), wantStatus: http.StatusOK,
			check: func(t *testing.T, _ *httptest.ResponseRecorder, events []*customsv1.Event) {
				wantArtifact(t, onePush(t, events), "ghcr.io", "acme/app", testDigest, ociManifest, "latest")
			},
		},
		{
			name: "form-encoded payload", path: "/webhooks/ghcr", body: form, header: formHeader, wantStatus: http.StatusOK,
			check: func(t *testing.T, _ *httptest.ResponseRecorder, events []*customsv1.Event) {
				wantArtifact(t, onePush(t, events), "ghcr.io", "acme/app", testDigest, ociManifest, "v1.2.3")
			},
		},
		{
			name: "npm package is ignored", path: "/webhooks/ghcr", body: fixture(t, "ghcr/npm_package.json"),
			header: ghcrHeaders("registry_package", fixture(t, "ghcr/npm_package.json")), wantStatus: http.StatusAccepted,
			check: func(t *testing.T, rec *httptest.ResponseRecorder, _ []*customsv1.Event) {
				wantIgnored(t, rec, "not a container")
			},
		},
		{
			name: "ping is ignored", path: "/webhooks/ghcr", body: fixture(t, "ghcr/ping.json"),
			header: ghcrHeaders("ping", fixture(t, "ghcr/ping.json")), wantStatus: http.StatusAccepted,
			check: func(t *testing.T, rec *httptest.ResponseRecorder, _ []*customsv1.Event) { wantIgnored(t, rec, "ping") },
		},
		{
			name: "missing signature", path: "/webhooks/ghcr", body: published,
			header: hdr("X-GitHub-Event", "registry_package"), wantStatus: http.StatusUnauthorized,
		},
		{
			name: "signature with another secret", path: "/webhooks/ghcr", body: published,
			header: hdr("X-GitHub-Event", "registry_package", "X-Hub-Signature-256", ghcrSign("other", published)), wantStatus: http.StatusForbidden,
		},
		{
			name: "signature of another body", path: "/webhooks/ghcr", body: published,
			header: hdr("X-GitHub-Event", "registry_package", "X-Hub-Signature-256", ghcrSign(ghcrSecret, []byte("{}"))), wantStatus: http.StatusForbidden,
		},
		{
			name: "sha1 signature only", path: "/webhooks/ghcr", body: published,
			header: hdr("X-GitHub-Event", "registry_package", "X-Hub-Signature-256", "sha1=abcd"), wantStatus: http.StatusUnauthorized,
		},
		{
			name: "bad digest", path: "/webhooks/ghcr", body: fixture(t, "ghcr/bad_digest.json"),
			header: ghcrHeaders("registry_package", fixture(t, "ghcr/bad_digest.json")), wantStatus: http.StatusBadRequest,
			check: func(t *testing.T, rec *httptest.ResponseRecorder, _ []*customsv1.Event) { wantReason(t, rec, "digest") },
		},
		{
			name: "no package_url", path: "/webhooks/ghcr", body: fixture(t, "ghcr/no_package_url.json"),
			header: ghcrHeaders("registry_package", fixture(t, "ghcr/no_package_url.json")), wantStatus: http.StatusBadRequest,
		},
		{
			name: "no event header", path: "/webhooks/ghcr", body: published,
			header: hdr("X-Hub-Signature-256", ghcrSign(ghcrSecret, published)), wantStatus: http.StatusBadRequest,
		},
	}
	runWebhookCases(t, build, cases)
}

func FuzzGHCR(f *testing.F) {
	seedFuzz(f, "ghcr")
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := parseGHCR(body, "delivery")
		checkParsed(t, p, err)
	})
}
