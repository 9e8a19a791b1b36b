package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/registries"
	"github.com/customs-dev/customs/pkg/testkit"
)

// realSetup is a running ingest on a real NATS, with a real Distribution
// registry whose notifications go to it, and the allow-list holding that
// registry.
type realSetup struct {
	nc      *backbone.Conn
	ingest  *httptest.Server
	regHost string
	allow   *registries.AllowList
	res     *RegistryResolver
}

const (
	eqDistToken  = "dist-token"
	eqHarborAuth = "Basic aGFyYm9yOnMzY3JldA=="
	eqGHCRSecret = "gh-s3cret"
	eqHubSecret  = "hub-secret-0123456789"
	eqQuaySecret = "quay-secret-0123456789"
)

func startReal(t *testing.T) *realSetup {
	t.Helper()
	s := &realSetup{nc: testkit.NATS(t), allow: &registries.AllowList{}}
	s.res = &RegistryResolver{Allow: s.allow}
	pub := backbone.NewPublisher(s.nc.JS)
	// The registry's host is known only once it runs, and it needs the
	// ingest URL to start: the ingest server is built with its receivers
	// after the registry, behind a handler that waits for it.
	var handler http.Handler
	ready := make(chan struct{})
	s.ingest = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-ready
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(s.ingest.Close)
	s.regHost = testkit.Registry(t, s.ingest.URL+"/webhooks/distribution", eqDistToken)
	s.allow.Add(registries.Registry{Host: s.regHost, PlainHTTP: true})

	dist, err := NewDistribution(DistributionConfig{Token: eqDistToken})
	must(t, err)
	harbor, err := NewHarbor(HarborConfig{AuthHeader: eqHarborAuth})
	must(t, err)
	ghcr, err := NewGHCR(GHCRConfig{Secret: eqGHCRSecret})
	must(t, err)
	hub, err := NewDockerHub(DockerHubConfig{Secret: eqHubSecret, RegistryHost: s.regHost})
	must(t, err)
	quay, err := NewQuay(QuayConfig{Secret: eqQuaySecret})
	must(t, err)
	srv, err := NewServer(Config{Logger: testkit.Logger(t), Resolver: s.res, PublishTimeout: 10 * time.Second}, pub, dist, harbor, ghcr, hub, quay)
	must(t, err)
	handler = srv.Handler()
	close(ready)
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// pushImage pushes a random image as repo:tag and returns its digest,
// media type and manifest size.
func (s *realSetup) pushImage(t *testing.T, repo string, tags ...string) (v1.Hash, string, int64) {
	t.Helper()
	img, err := random.Image(512, 1)
	must(t, err)
	for _, tag := range tags {
		ref, err := name.ParseReference(s.regHost+"/"+repo+":"+tag, name.Insecure)
		must(t, err)
		must(t, remote.Write(ref, img))
	}
	d, err := img.Digest()
	must(t, err)
	mt, err := img.MediaType()
	must(t, err)
	raw, err := img.RawManifest()
	must(t, err)
	return d, string(mt), int64(len(raw))
}

// post sends a webhook to the running ingest and returns the status.
func (s *realSetup) post(t *testing.T, path string, body []byte, header http.Header) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.ingest.URL+path, bytes.NewReader(body))
	must(t, err)
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	var out bytes.Buffer
	_, _ = out.ReadFrom(resp.Body)
	t.Logf("POST %s: %d %s", path, resp.StatusCode, out.String())
	return resp.StatusCode
}

// pushedBySource waits for the artifact.pushed event of each key
// ("source|tag") for the digest and returns them by key.
func pushedBySource(t *testing.T, js jetstream.JetStream, digest string, keys ...string) map[string]*customsv1.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, backbone.StreamArtifacts, jetstream.OrderedConsumerConfig{FilterSubjects: []string{backbone.SubjectPushed}})
	must(t, err)
	got := map[string]*customsv1.Event{}
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	for len(got) < len(want) {
		msg, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			t.Fatalf("waiting for pushed events %v, have %d: %v", keys, len(got), err)
		}
		evt := &customsv1.Event{}
		must(t, proto.Unmarshal(msg.Data(), evt))
		key := evt.GetPushed().GetSource() + "|" + evt.GetArtifact().GetTag()
		if evt.GetArtifact().GetDigest() == digest && want[key] {
			got[key] = evt
		}
	}
	return got
}

// TestWebhookFormatsEquivalence checks every format at once: Harbor-,
// GHCR-, Docker Hub-, Quay- and Zot-shaped (over NATS) reports of one real
// push give the same artifact.pushed as Distribution's own notification.
// tests/integration has the acceptance test through NewService.
func TestWebhookFormatsEquivalence(t *testing.T) {
	t.Parallel()
	s := startReal(t)
	// Docker Hub and Quay report tags with no event id: their dedup id is
	// the hash of the push, the same as Harbor's default format for the
	// same tag. Each gets its own tag so each event is stored.
	digest, mediaType, size := s.pushImage(t, "team/app", "v1", "v1-hub", "v1-quay")

	// Harbor, default format: no media type, resolved from the registry.
	harbor := fmt.Sprintf(`{"type":"PUSH_ARTIFACT","occur_at":%d,"operator":"admin","event_data":{"resources":[{"digest":%q,"tag":"v1","resource_url":"%s/team/app:v1"}],"repository":{"date_created":1680501893,"name":"app","namespace":"team","repo_full_name":"team/app","repo_type":"private"}}}`,
		time.Now().Unix(), digest.String(), s.regHost)
	if code := s.post(t, "/webhooks/harbor", []byte(harbor), hdr("Authorization", eqHarborAuth, "Content-Type", "application/json")); code != http.StatusOK {
		t.Fatalf("harbor webhook: %d", code)
	}

	// GHCR: the real fixture, re-aimed at this registry and image.
	var gh map[string]any
	must(t, json.Unmarshal(fixture(t, "ghcr/published.json"), &gh))
	pv := gh["registry_package"].(map[string]any)["package_version"].(map[string]any)
	pv["package_url"] = s.regHost + "/team/app:v1"
	pv["name"], pv["version"] = digest.String(), digest.String()
	cm := pv["container_metadata"].(map[string]any)
	cm["tag"] = map[string]any{"name": "v1", "digest": digest.String()}
	cm["manifest"].(map[string]any)["media_type"] = mediaType
	cm["manifest"].(map[string]any)["size"] = size
	ghBody, err := json.Marshal(gh)
	must(t, err)
	ghHeader := hdr("X-GitHub-Event", "registry_package", "X-GitHub-Delivery", "d-1", "Content-Type", "application/json")
	ghHeader.Set("X-Hub-Signature-256", ghcrSign(eqGHCRSecret, ghBody))
	if code := s.post(t, "/webhooks/ghcr", ghBody, ghHeader); code != http.StatusOK {
		t.Fatalf("ghcr webhook: %d", code)
	}

	// Docker Hub and Quay: tag only, resolved against the registry.
	hub := fmt.Sprintf(`{"callback_url":"https://registry.hub.docker.com/u/team/app/hook/x/","push_data":{"pushed_at":%d,"pusher":"bot","tag":"v1-hub"},"repository":{"repo_name":"team/app","namespace":"team","name":"app"}}`, time.Now().Unix())
	if code := s.post(t, "/webhooks/dockerhub/"+eqHubSecret, []byte(hub), hdr("Content-Type", "application/json")); code != http.StatusOK {
		t.Fatalf("dockerhub webhook: %d", code)
	}
	quay := fmt.Sprintf(`{"name":"app","repository":"team/app","namespace":"team","docker_url":"%s/team/app","homepage":"https://quay.io/repository/team/app","updated_tags":["v1-quay"]}`, s.regHost)
	if code := s.post(t, "/webhooks/quay/"+eqQuaySecret, []byte(quay), hdr("Content-Type", "application/json")); code != http.StatusOK {
		t.Fatalf("quay webhook: %d", code)
	}

	// Zot over NATS, structured mode, with no media type either.
	zot, err := NewZotNATS(ZotNATSConfig{Subject: "zot.events", RegistryHost: s.regHost}, backbone.NewPublisher(s.nc.JS), s.res, testkit.Logger(t))
	must(t, err)
	sub, err := zot.Subscribe(s.nc.NC)
	must(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	ce := fmt.Sprintf(`{"specversion":"1.0","id":"zot-1","source":"zotregistry.dev","type":"zotregistry.image.updated","datacontenttype":"application/json","data":{"name":"team/app","reference":"v1","digest":%q}}`, digest.String())
	reply, err := s.nc.NC.Request("zot.events", []byte(ce), 10*time.Second)
	must(t, err)
	if !bytes.Contains(reply.Data, []byte(`"accepted":[{`)) {
		t.Fatalf("zot over NATS: %s", reply.Data)
	}

	events := pushedBySource(t, s.nc.JS, digest.String(),
		"distribution|v1", "distribution|v1-hub", "distribution|v1-quay", "harbor|v1", "ghcr|v1", "zot|v1", "dockerhub|v1-hub", "quay|v1-quay")
	wantRef := &customsv1.ArtifactRef{Registry: s.regHost, Repository: "team/app", Digest: digest.String(), MediaType: mediaType, Tag: "v1"}
	if diff := cmp.Diff(wantRef, events["distribution|v1"].GetArtifact(), protocmp.Transform()); diff != "" {
		t.Fatalf("distribution artifact (-want +got):\n%s", diff)
	}
	for key, got := range events {
		source, tag, _ := strings.Cut(key, "|")
		if source == "distribution" {
			continue
		}
		want := events["distribution|"+tag]
		diff := cmp.Diff(want, got, protocmp.Transform(),
			protocmp.IgnoreFields(&customsv1.Event{}, "id", "correlation_id", "occurred_at"),
			protocmp.IgnoreFields(&customsv1.ArtifactPushed{}, "source", "source_event_id", "actor", "size"))
		if diff != "" {
			t.Errorf("%s event differs from distribution's (-distribution +%s):\n%s", key, source, diff)
		}
		// Zot's sink here sent no manifest, so it has no size to report.
		if source != "zot" && got.GetPushed().GetSize() != want.GetPushed().GetSize() {
			t.Errorf("%s size = %d, want %d", key, got.GetPushed().GetSize(), want.GetPushed().GetSize())
		}
	}
}

// TestRegistryResolver resolves against a real registry and classifies
// its failures.
func TestRegistryResolver(t *testing.T) {
	t.Parallel()
	s := startReal(t)
	digest, mediaType, size := s.pushImage(t, "team/resolve", "v2")
	// A host on the list where nothing listens: the sender must retry.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadHost := dead.Listener.Addr().String()
	dead.Close()
	s.allow.Add(registries.Registry{Host: deadHost, PlainHTTP: true})

	tests := []struct {
		name    string
		ref     *customsv1.ArtifactRef
		want    Resolved
		wantErr error
	}{
		{name: "tag", ref: &customsv1.ArtifactRef{Registry: s.regHost, Repository: "team/resolve", Tag: "v2"}, want: Resolved{Digest: digest.String(), MediaType: mediaType, Size: size}},
		{name: "digest", ref: &customsv1.ArtifactRef{Registry: s.regHost, Repository: "team/resolve", Digest: digest.String()}, want: Resolved{Digest: digest.String(), MediaType: mediaType, Size: size}},
		{name: "unknown tag", ref: &customsv1.ArtifactRef{Registry: s.regHost, Repository: "team/resolve", Tag: "nope"}, wantErr: ErrUnresolvable},
		{name: "unknown repository", ref: &customsv1.ArtifactRef{Registry: s.regHost, Repository: "team/none", Tag: "v2"}, wantErr: ErrUnresolvable},
		{name: "off the allow-list", ref: &customsv1.ArtifactRef{Registry: "169.254.169.254", Repository: "team/resolve", Tag: "v2"}, wantErr: ErrRegistryNotAllowed},
		{name: "unreachable", ref: &customsv1.ArtifactRef{Registry: deadHost, Repository: "team/resolve", Tag: "v2"}, wantErr: ErrRegistryUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, err := s.res.Resolve(ctx, tt.ref)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Resolve error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Resolve = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}

	// Through the server: a refused resolution publishes nothing. The
	// registry's own notification of the push above arrives on its own
	// schedule; count from after it.
	deadline := time.Now().Add(10 * time.Second)
	for streamMsgs(t, s.nc.JS) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the registry's notification of the push never arrived")
		}
		time.Sleep(10 * time.Millisecond)
	}
	before := streamMsgs(t, s.nc.JS)
	hub := `{"push_data":{"pushed_at":1,"pusher":"bot","tag":"nope"},"repository":{"repo_name":"team/resolve"}}`
	if code := s.post(t, "/webhooks/dockerhub/"+eqHubSecret, []byte(hub), hdr("Content-Type", "application/json")); code != http.StatusUnprocessableEntity {
		t.Fatalf("unknown tag: %d, want 422", code)
	}
	if after := streamMsgs(t, s.nc.JS); after != before {
		t.Fatalf("stream grew from %d to %d messages on a refused webhook", before, after)
	}
}

func streamMsgs(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	st, err := js.Stream(context.Background(), backbone.StreamArtifacts)
	must(t, err)
	info, err := st.Info(context.Background())
	must(t, err)
	return info.State.Msgs
}

// TestZotNATSPath covers the NATS sink path on a real NATS: binary mode,
// malformed events, and ignored types.
func TestZotNATSPath(t *testing.T) {
	t.Parallel()
	nc := testkit.NATS(t)
	z, err := NewZotNATS(ZotNATSConfig{Subject: "zot.test", RegistryHost: "zot.example.com:5000"}, backbone.NewPublisher(nc.JS), nil, testkit.Logger(t))
	must(t, err)
	sub, err := z.Subscribe(nc.NC)
	must(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	request := func(t *testing.T, hdrs nats.Header, body []byte) Response {
		t.Helper()
		msg := &nats.Msg{Subject: "zot.test", Header: hdrs, Data: body}
		reply, err := nc.NC.RequestMsg(msg, 10*time.Second)
		must(t, err)
		var resp Response
		if err := json.Unmarshal(reply.Data, &resp); err != nil || resp.Accepted == nil {
			var eb errorBody
			_ = json.Unmarshal(reply.Data, &eb)
			if eb.Reason != "" {
				return Response{Ignored: []Ignored{{Reason: "rejected: " + eb.Reason}}}
			}
			t.Fatalf("reply %s", reply.Data)
		}
		return resp
	}
	t.Run("binary mode", func(t *testing.T) {
		h := nats.Header{}
		// The NATS binding writes ce- headers in lower case.
		for k, v := range map[string]string{"ce-specversion": "1.0", "ce-id": "zot-bin-1", "ce-source": "zotregistry.dev", "ce-type": ZotImageUpdated, "content-type": "application/json"} {
			h[k] = []string{v}
		}
		resp := request(t, h, fixture(t, "zot/image_updated_data.json"))
		if len(resp.Accepted) != 1 || resp.Accepted[0].Digest != testDigest || resp.Accepted[0].Tag != "v1.2.3" || resp.Accepted[0].Registry != "zot.example.com:5000" {
			t.Fatalf("accepted = %+v", resp.Accepted)
		}
		// Same event again: stored once.
		resp = request(t, h, fixture(t, "zot/image_updated_data.json"))
		if len(resp.Accepted) != 1 || !resp.Accepted[0].Duplicate {
			t.Fatalf("re-sent event not deduplicated: %+v", resp.Accepted)
		}
	})
	t.Run("malformed is refused and nothing stored", func(t *testing.T) {
		before := streamMsgs(t, nc.JS)
		resp := request(t, nil, fixture(t, "zot/no_digest.json"))
		if len(resp.Ignored) != 1 || !bytes.Contains([]byte(resp.Ignored[0].Reason), []byte("rejected")) {
			t.Fatalf("malformed event: %+v", resp)
		}
		if streamMsgs(t, nc.JS) != before {
			t.Fatal("a malformed event was stored")
		}
	})
	t.Run("deleted is ignored", func(t *testing.T) {
		resp := request(t, nil, fixture(t, "zot/image_deleted.json"))
		if len(resp.Accepted) != 0 || len(resp.Ignored) != 1 {
			t.Fatalf("image deleted: %+v", resp)
		}
	})
}

// TestZotNATSDurable: what Zot publishes while ingest is down is kept by
// the ZOT_EVENTS stream and stored once ingest is back; a malformed event
// is terminated, and the stream ends empty.
func TestZotNATSDurable(t *testing.T) {
	t.Parallel()
	nc := testkit.NATS(t)
	ctx := context.Background()
	z, err := NewZotNATS(ZotNATSConfig{Subject: "zot.durable", RegistryHost: "zot.example.com:5000"}, backbone.NewPublisher(nc.JS), nil, testkit.Logger(t))
	must(t, err)
	// An earlier start of ingest created the stream; now no ingest runs.
	_, err = z.EnsureStream(ctx, nc.JS, 1)
	must(t, err)

	h := nats.Header{}
	for k, v := range map[string]string{"ce-specversion": "1.0", "ce-id": "zot-durable-1", "ce-source": "zotregistry.dev", "ce-type": ZotImageUpdated, "content-type": "application/json"} {
		h[k] = []string{v}
	}
	good := fixture(t, "zot/image_updated_data.json")
	for _, m := range []*nats.Msg{
		{Subject: "zot.durable", Header: h, Data: good},
		{Subject: "zot.durable", Data: fixture(t, "zot/no_digest.json")},
		{Subject: "zot.durable", Header: h, Data: good}, // Zot sending the same event twice
	} {
		must(t, nc.NC.PublishMsg(m))
	}
	must(t, nc.NC.Flush())
	zotMsgs := func() uint64 {
		st, err := nc.JS.Stream(ctx, ZotNATSStream)
		must(t, err)
		info, err := st.Info(ctx)
		must(t, err)
		return info.State.Msgs
	}
	deadline := time.Now().Add(10 * time.Second)
	for zotMsgs() != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("ZOT_EVENTS holds %d events while ingest is down, want 3", zotMsgs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := streamMsgs(t, nc.JS); n != 0 {
		t.Fatalf("%d artifact events before ingest is back", n)
	}

	cc, err := z.Consume(ctx, nc.JS, 1)
	must(t, err)
	t.Cleanup(cc.Stop)
	deadline = time.Now().Add(30 * time.Second)
	for zotMsgs() != 0 || streamMsgs(t, nc.JS) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("after ingest came back: ZOT_EVENTS %d, ARTIFACTS %d; want 0 and 1", zotMsgs(), streamMsgs(t, nc.JS))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
