package integration

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/testkit"
	"github.com/customs-dev/customs/services/ingest/ingest"
)

// TestWebhookFormatsMatchDistribution is issue 7's acceptance test: a
// Harbor-shaped and a GHCR-shaped webhook for an image, sent to a running
// ingest built the way the service builds itself (ServiceConfig and
// NewService), give the same artifact.pushed as the registry's own
// Distribution notification.
func TestWebhookFormatsMatchDistribution(t *testing.T) {
	t.Parallel()
	const (
		harborAuth = "Bearer harbor-integration"
		ghcrSecret = "ghcr-integration"
	)
	conn := testkit.NATS(t)
	// The registry needs ingest's URL and ingest needs the registry on its
	// allow-list: serve a handler that is filled in once both exist.
	var handler atomic.Pointer[http.Handler]
	url := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := handler.Load()
		if h == nil {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		(*h).ServeHTTP(w, r)
	}))
	registry := testkit.Registry(t, url+"/webhooks/distribution", webhookToken)
	srv, err := ingest.NewService(ingest.ServiceConfig{
		DistributionToken: webhookToken,
		HarborAuthHeader:  harborAuth,
		GHCRSecret:        ghcrSecret,
		Registries:        registry + ";plain-http",
	}, backbone.NewPublisher(conn.JS), conn.Ready, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	handler.Store(&h)

	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(registry+"/team/formats:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	digest, _ := img.Digest()
	mediaType, _ := img.MediaType()
	raw, _ := img.RawManifest()

	send := func(path string, body []byte, header http.Header) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, url+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header = header
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %d, want 200", path, resp.StatusCode)
		}
	}
	// Harbor's default payload has no media type: ingest asks the registry.
	harbor := fmt.Sprintf(`{"type":"PUSH_ARTIFACT","occur_at":%d,"operator":"admin","event_data":{"resources":[{"digest":%q,"tag":"v1","resource_url":"%s/team/formats:v1"}],"repository":{"name":"formats","namespace":"team","repo_full_name":"team/formats","repo_type":"private"}}}`,
		time.Now().Unix(), digest.String(), registry)
	send("/webhooks/harbor", []byte(harbor), http.Header{"Authorization": {harborAuth}, "Content-Type": {"application/json"}})

	ghcr := fmt.Sprintf(`{"action":"published","registry_package":{"name":"formats","namespace":"team","ecosystem":"CONTAINER","package_type":"CONTAINER","package_version":{"name":%q,"version":%q,"package_url":"%s/team/formats:v1","created_at":"2025-06-01T10:00:00Z","updated_at":"2025-06-01T10:00:01Z","container_metadata":{"tag":{"name":"v1","digest":%q},"manifest":{"digest":%q,"media_type":%q,"size":%d}}},"registry":{"url":"https://ghcr.io/team"}},"sender":{"login":"octocat"}}`,
		digest, digest, registry, digest, digest, mediaType, len(raw))
	mac := hmac.New(sha256.New, []byte(ghcrSecret))
	mac.Write([]byte(ghcr))
	send("/webhooks/ghcr", []byte(ghcr), http.Header{
		"X-Github-Event": {"registry_package"}, "X-Github-Delivery": {"delivery-1"}, "Content-Type": {"application/json"},
		"X-Hub-Signature-256": {"sha256=" + hex.EncodeToString(mac.Sum(nil))},
	})

	// Collect one artifact.pushed per source for this digest.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := conn.JS.OrderedConsumer(ctx, backbone.StreamArtifacts, jetstream.OrderedConsumerConfig{FilterSubjects: []string{backbone.SubjectPushed}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*customsv1.Event{}
	for len(got) < 3 {
		msg, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			t.Fatalf("waiting for the distribution, harbor and ghcr events (have %d): %v", len(got), err)
		}
		evt := &customsv1.Event{}
		if err := proto.Unmarshal(msg.Data(), evt); err != nil {
			t.Fatal(err)
		}
		if evt.GetArtifact().GetDigest() == digest.String() && evt.GetArtifact().GetTag() == "v1" {
			got[evt.GetPushed().GetSource()] = evt
		}
	}
	dist := got["distribution"]
	if dist == nil {
		t.Fatalf("no distribution event among %v", got)
	}
	wantRef := &customsv1.ArtifactRef{Registry: registry, Repository: "team/formats", Digest: digest.String(), MediaType: string(mediaType), Tag: "v1"}
	if diff := cmp.Diff(wantRef, dist.GetArtifact(), protocmp.Transform()); diff != "" {
		t.Fatalf("distribution artifact (-want +got):\n%s", diff)
	}
	for _, source := range []string{"harbor", "ghcr"} {
		diff := cmp.Diff(dist, got[source], protocmp.Transform(),
			protocmp.IgnoreFields(&customsv1.Event{}, "id", "correlation_id", "occurred_at"),
			protocmp.IgnoreFields(&customsv1.ArtifactPushed{}, "source", "source_event_id", "actor"))
		if diff != "" {
			t.Errorf("%s artifact.pushed differs from distribution's (-distribution +%s):\n%s", source, source, diff)
		}
	}
}
