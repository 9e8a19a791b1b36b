package ingest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

const hubSecret = "0123456789abcdef-hub"

func TestDockerHubWebhook(t *testing.T) {
	t.Parallel()
	builder := func(res Resolver) func(t *testing.T, pub Publisher) *Server {
		return func(t *testing.T, pub Publisher) *Server {
			d, err := NewDockerHub(DockerHubConfig{Secret: hubSecret})
			if err != nil {
				t.Fatal(err)
			}
			return newFormatServer(t, pub, res, d)
		}
	}
	url := "/webhooks/dockerhub/" + hubSecret
	json := hdr("Content-Type", "application/json")
	cases := []webhookCase{
		{
			name: "push resolves the tag", path: url, body: fixture(t, "dockerhub/push.json"), header: json, wantStatus: http.StatusOK,
			check: func(t *testing.T, _ *httptest.ResponseRecorder, events []*customsv1.Event) {
				evt := onePush(t, events)
				wantArtifact(t, evt, "docker.io", "svendowideit/testhook", testDigest, ociManifest, "latest")
				if p := evt.GetPushed(); p.GetActor() != "trustedbuilder" || p.GetSize() != 1234 || p.GetSourceEventId() != "" {
					t.Fatalf("pushed = %v", p)
				}
			},
		},
		{
			name: "official image under library/", path: url, body: fixture(t, "dockerhub/official.json"), header: json, wantStatus: http.StatusOK,
			check: func(t *testing.T, _ *httptest.ResponseRecorder, events []*customsv1.Event) {
				wantArtifact(t, onePush(t, events), "docker.io", "library/nginx", testDigest, ociManifest, "1.27")
			},
		},
		{name: "wrong secret", path: "/webhooks/dockerhub/wrong-secret-0123456", body: fixture(t, "dockerhub/push.json"), wantStatus: http.StatusForbidden},
		{name: "no secret", path: "/webhooks/dockerhub", body: fixture(t, "dockerhub/push.json"), wantStatus: http.StatusUnauthorized},
		{name: "secret with an extra segment", path: url + "/x", body: fixture(t, "dockerhub/push.json"), wantStatus: http.StatusNotFound},
		{name: "no tag", path: url, body: fixture(t, "dockerhub/no_tag.json"), wantStatus: http.StatusBadRequest},
		{name: "bad repository", path: url, body: fixture(t, "dockerhub/bad_repo.json"), wantStatus: http.StatusBadRequest},
		{
			name: "not a Docker Hub payload", path: url, body: fixture(t, "dockerhub/not_dockerhub.json"), wantStatus: http.StatusBadRequest,
			check: func(t *testing.T, rec *httptest.ResponseRecorder, _ []*customsv1.Event) {
				wantReason(t, rec, "push_data")
			},
		},
	}
	runWebhookCases(t, builder(staticResolver()), cases)

	resolveErr := func(err error) Resolver {
		return &fakeResolver{ResolveFunc: func(context.Context, *customsv1.ArtifactRef) (Resolved, error) { return Resolved{}, err }}
	}
	push := fixture(t, "dockerhub/push.json")
	t.Run("registry off the allow-list", func(t *testing.T) {
		t.Parallel()
		runWebhookCases(t, builder(resolveErr(fmt.Errorf("%w: docker.io", ErrRegistryNotAllowed))), []webhookCase{
			{name: "422", path: url, body: push, wantStatus: http.StatusUnprocessableEntity},
		})
	})
	t.Run("registry unreachable", func(t *testing.T) {
		t.Parallel()
		runWebhookCases(t, builder(resolveErr(fmt.Errorf("%w: dial tcp: refused", ErrRegistryUnavailable))), []webhookCase{
			{name: "503 with Retry-After", path: url, body: push, wantStatus: http.StatusServiceUnavailable,
				check: func(t *testing.T, rec *httptest.ResponseRecorder, _ []*customsv1.Event) {
					if rec.Header().Get("Retry-After") == "" {
						t.Fatal("no Retry-After")
					}
				}},
		})
	})
	t.Run("tag that is not an image", func(t *testing.T) {
		t.Parallel()
		res := &fakeResolver{ResolveFunc: func(context.Context, *customsv1.ArtifactRef) (Resolved, error) {
			return Resolved{Digest: testDigest, MediaType: "application/vnd.cncf.helm.config.v1+json"}, nil
		}}
		runWebhookCases(t, builder(res), []webhookCase{{name: "ignored", path: url, body: push, wantStatus: http.StatusAccepted}})
	})
	t.Run("no resolver", func(t *testing.T) {
		t.Parallel()
		runWebhookCases(t, builder(nil), []webhookCase{{name: "422", path: url, body: push, wantStatus: http.StatusUnprocessableEntity}})
	})
}

// TestPathSecretNeverReachesLogs checks the URL secret is taken out of the
// path before anything records it.
func TestPathSecretNeverReachesLogs(t *testing.T) {
	t.Parallel()
	var logs strings.Builder
	d, err := NewDockerHub(DockerHubConfig{Secret: hubSecret})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(Config{Logger: newBufferLogger(&logs), Resolver: staticResolver()}, &recPublisher{}, d)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{hubSecret, "a-wrong-guess-of-the-secret"} {
		req := httptest.NewRequest(http.MethodPost, "/webhooks/dockerhub/"+secret, strings.NewReader("{"))
		srv.Handler().ServeHTTP(httptest.NewRecorder(), req)
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("logs contain the URL secret: %s", logs.String())
		}
	}
	if logs.Len() == 0 {
		t.Fatal("nothing was logged; the test would prove nothing")
	}
}

func TestNewDockerHubRefusesWeakSecrets(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "short", "has/a/slash-0123456789"} {
		if _, err := NewDockerHub(DockerHubConfig{Secret: s}); err == nil {
			t.Errorf("NewDockerHub(%q) succeeded", s)
		}
	}
}

func FuzzDockerHub(f *testing.F) {
	seedFuzz(f, "dockerhub")
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := parseDockerHub(body, DockerHubRegistry)
		checkParsed(t, p, err)
	})
}
