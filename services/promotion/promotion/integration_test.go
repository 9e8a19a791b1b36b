package promotion_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/registries"
	"github.com/customs-dev/customs/pkg/testkit"
	"github.com/customs-dev/customs/services/ingest/ingest"
	"github.com/customs-dev/customs/services/promotion/promotion"
	"github.com/customs-dev/customs/services/query/query"
	"github.com/customs-dev/customs/services/signer/signer"
)

// env is one running system: NATS, a dev registry (sources and staging),
// a second registry for prod, the promotion service and the query API.
type env struct {
	dev, prod string
	js        jetstream.JetStream
	pub       *backbone.Publisher
	api       customsv1.ArtifactServiceClient
	release   *testKey
	rogue     *testKey
	rulesFile string
	svc       *promotion.Service
	signerPub string
	// prodWrites counts write requests to the prod registry.
	prodWrites atomic.Int64
}

const rulesTmpl = `
rules:
  - id: team-apps
    source: "*/team/*"
    targets:
      - environment: staging
        repository: "{registry}/staging/{repository}"
        auto: true
        max_severity: high
      - environment: prod
        repository: "%s/prod/{repository}"
        requires: staging
        keys: [release]
        require_attestations: [cyclonedx]
        tag_policy:
          block_tag_moves: true
`

// startOpts changes what start runs.
type startOpts struct {
	// withSigner runs the real signer service with a generated cosign key
	// pair, trusted by the promotion service as key "signer".
	withSigner bool
}

func start(t testing.TB, opts ...startOpts) *env {
	t.Helper()
	var o startOpts
	for _, x := range opts {
		o = x
	}
	ctx, cancel := context.WithCancel(context.Background())
	conn := testkit.NATS(t)
	// The dev registry (sources and staging) notifies a real ingest, as in
	// `make run`, so artifact.pushed events and their tags come from real
	// webhooks. The prod registry sends none.
	ing, err := ingest.NewService(ingest.ServiceConfig{DistributionToken: "promotion-test", MaxBodyBytes: 64 << 10},
		backbone.NewPublisher(conn.JS), conn.Ready, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	hook := httptest.NewServer(ing.Handler())
	t.Cleanup(hook.Close)
	e := &env{
		dev: testkit.Registry(t, hook.URL+"/webhooks/distribution", "promotion-test"),
		js:  conn.JS, pub: backbone.NewPublisher(conn.JS),
	}
	// The prod registry sits behind a proxy that counts writes, so a test
	// can tell that a repeated promotion copied nothing.
	prodURL, err := url.Parse("http://" + testkit.Registry(t, "", ""))
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(prodURL)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			e.prodWrites.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	e.prod = strings.TrimPrefix(proxy.URL, "http://")
	dir := t.TempDir()
	e.release = newKey(t, dir, "release")
	e.rogue = newKey(t, dir, "rogue")
	e.rulesFile = filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(e.rulesFile, fmt.Appendf(nil, rulesTmpl, e.prod), 0o600); err != nil {
		t.Fatal(err)
	}
	allow, err := registries.Parse(e.dev + ";plain-http," + e.prod + ";plain-http")
	if err != nil {
		t.Fatal(err)
	}
	log := testkit.Logger(t)
	keys := "release=" + e.release.file
	var signerSvc *signer.Service
	if o.withSigner {
		files, _, err := signer.EnsureKeyPair(filepath.Join(dir, "signer"))
		if err != nil {
			t.Fatal(err)
		}
		e.signerPub = files.PublicKey
		keys += ",signer=" + files.PublicKey
		if signerSvc, err = signer.NewService(ctx, signer.ServiceConfig{Key: files.PrivateKey, KeyPasswordFile: files.Password},
			conn.JS, log.With("service", "signer"), allow); err != nil {
			t.Fatal(err)
		}
	}
	svc, err := promotion.NewService(ctx, promotion.ServiceConfig{
		RulesFile: e.rulesFile, PublicKeys: keys, ReloadInterval: 100 * time.Millisecond,
	}, conn.JS, conn.NC, log.With("service", "promotion"), allow)
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	qs, err := query.NewService(ctx, query.ServiceConfig{Listen: "127.0.0.1:0"}, conn.JS, log.With("service", "query"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 3)
	running := 2
	go func() { _ = svc.Run(ctx); done <- struct{}{} }()
	go func() { _ = qs.Run(ctx, ln); done <- struct{}{} }()
	if signerSvc != nil {
		running++
		go func() { _ = signerSvc.Run(ctx); done <- struct{}{} }()
	}
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	e.api = customsv1.NewArtifactServiceClient(cc)
	t.Cleanup(func() {
		_ = cc.Close()
		cancel()
		for range running {
			<-done
		}
	})
	return e
}

func eventually(t testing.TB, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

// deployment waits until env shows app at digest.
func (e *env) deployment(t testing.TB, envName, app, digest string) *customsv1.Deployment {
	t.Helper()
	var got *customsv1.Deployment
	eventually(t, "GetEnvironment("+envName+") shows "+app, func() error {
		resp, err := e.api.GetEnvironment(context.Background(), &customsv1.GetEnvironmentRequest{Name: envName, View: customsv1.EnvironmentView_ENVIRONMENT_VIEW_FULL})
		if err != nil {
			return err
		}
		for _, d := range resp.GetEnvironment().GetDeployments() {
			if d.GetApplication() == app && d.GetDigest() == digest {
				got = d
				return nil
			}
		}
		return fmt.Errorf("not yet: %v", resp.GetEnvironment().GetDeployments())
	})
	// The default, basic view must say the same in its compact form.
	resp, err := e.api.GetEnvironment(context.Background(), &customsv1.GetEnvironmentRequest{Name: envName})
	if err != nil {
		t.Fatalf("GetEnvironment(%s), basic view: %v", envName, err)
	}
	var basic *customsv1.Deployment
	for _, d := range resp.GetEnvironment().GetDeployments() {
		if d.GetApplication() == app {
			basic = d
		}
	}
	want := &customsv1.Deployment{
		Application: got.GetApplication(), Reference: got.GetReference(), Tags: got.GetTags(), PromotedAt: got.GetPromotedAt(),
		Actor: got.GetActor(), RuleId: got.GetRuleId(), Scanned: got.GetScan() != nil, HighestSeverity: got.GetHighestSeverity(),
		FindingCount: got.GetFindingCount(), SigningKeyId: got.GetSignature().GetKeyId(),
	}
	// The full view was read first; a later scan or signature may have
	// landed in between, so compare only when the basic view shows the same
	// promotion.
	if basic.GetReference() == want.GetReference() && basic.GetScanned() == want.GetScanned() && basic.GetSigningKeyId() == want.GetSigningKeyId() && !proto.Equal(basic, want) {
		t.Errorf("basic view of %s in %s:\n got %v\nwant %v", app, envName, basic, want)
	}
	if basic.GetReference() != app+"@"+digest {
		t.Errorf("basic view of %s in %s pins %q, want %q", app, envName, basic.GetReference(), app+"@"+digest)
	}
	return got
}

// awaitPushed waits until ingest has turned the registry's webhooks for
// every tag of d into artifact.pushed (the projection shows the tags), as
// the scanner would before scanning.
func (e *env) awaitPushed(t testing.TB, d name.Digest, tags ...string) {
	t.Helper()
	eventually(t, "artifact.pushed for "+d.String(), func() error {
		resp, err := e.api.GetArtifact(context.Background(), &customsv1.GetArtifactRequest{Selector: &customsv1.GetArtifactRequest_Digest{Digest: d.DigestStr()}})
		if err != nil {
			return err
		}
		for _, l := range resp.GetArtifact().GetLocations() {
			if l.GetRegistry() == d.RegistryStr() && l.GetRepository() == d.RepositoryStr() {
				for _, tag := range tags {
					if !slices.Contains(l.GetTags(), tag) {
						return fmt.Errorf("tags %v, want %s", l.GetTags(), tag)
					}
				}
				return nil
			}
		}
		return fmt.Errorf("locations %v", resp.GetArtifact().GetLocations())
	})
}

// rejection waits for the promote stage of digest to be rejected and
// returns the reason and details.
func (e *env) rejection(t *testing.T, digest string) *customsv1.StageState {
	t.Helper()
	var st *customsv1.StageState
	eventually(t, "promotion of "+digest+" rejected", func() error {
		resp, err := e.api.GetArtifact(context.Background(), &customsv1.GetArtifactRequest{Selector: &customsv1.GetArtifactRequest_Digest{Digest: digest}})
		if err != nil {
			return err
		}
		for _, s := range resp.GetArtifact().GetStages() {
			if s.GetStage() == customsv1.Stage_STAGE_PROMOTE && s.GetStatus() == customsv1.StageStatus_STAGE_STATUS_REJECTED {
				st = s
				return nil
			}
		}
		return fmt.Errorf("stages %v", resp.GetArtifact().GetStages())
	})
	return st
}

func (e *env) promotedCount(t *testing.T) uint64 {
	t.Helper()
	s, err := e.js.Stream(context.Background(), backbone.StreamArtifacts)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(backbone.SubjectPromoted))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[backbone.SubjectPromoted]
}

// consumerDone waits until the promotion consumer has handled every
// message up to stream sequence seq.
func (e *env) consumerDone(t testing.TB, seq uint64) {
	t.Helper()
	eventually(t, "promotion consumer idle", func() error {
		c, err := e.js.Consumer(context.Background(), backbone.StreamArtifacts, promotion.ConsumerDurable)
		if err != nil {
			return err
		}
		info, err := c.Info(context.Background())
		if err != nil {
			return err
		}
		if info.AckFloor.Stream < seq || info.NumAckPending != 0 {
			return fmt.Errorf("ack floor %d < %d, ack pending %d", info.AckFloor.Stream, seq, info.NumAckPending)
		}
		return nil
	})
}

func tagsAt(t *testing.T, repo string, tags ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, tag := range tags {
		d, err := remote.Head(mustTag(t, repo+":"+tag))
		if err != nil {
			out[tag] = "missing: " + err.Error()
			continue
		}
		out[tag] = d.Digest.String()
	}
	return out
}

func mustTag(t *testing.T, s string) name.Tag {
	t.Helper()
	tg, err := name.NewTag(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func mustDigest(t *testing.T, s string) name.Digest {
	t.Helper()
	d, err := name.NewDigest(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestPromotionEndToEnd pushes, "scans" (synthetic event) and signs (cosign
// library, standard format) an image in a real registry, lets the service
// auto-promote it to staging, promotes it by hand to prod through the gRPC
// API and the NATS command subject, and checks every refusal.
func TestPromotionEndToEnd(t *testing.T) {
	e := start(t)
	ctx := context.Background()

	const sha = "1234567" // all digits: a git SHA, not a number, not semver
	img := pushImage(t, e.dev, "team/app", "v1.2.3", sha)
	sign(t, img, e.release)
	attestSBOM(t, img, e.release)
	e.awaitPushed(t, img, "v1.2.3", sha)
	scanned(t, e.pub, img, "v1.2.3", 0)
	signedEvt(t, e.pub, img, "v1.2.3", "signed-app-1")

	stagingApp := e.dev + "/staging/team/app"
	prodApp := e.prod + "/prod/team/app"

	t.Run("auto-promoted to staging, pinned by digest and verifiable", func(t *testing.T) {
		d := e.deployment(t, "staging", stagingApp, img.DigestStr())
		if d.GetReference() != stagingApp+"@"+img.DigestStr() || d.GetActor() != "auto" || d.GetRuleId() != "team-apps" {
			t.Errorf("staging deployment = %v", d)
		}
		if !slices.Equal(d.GetTags(), []string{sha, "v1.2.3"}) {
			t.Errorf("staging tags = %v", d.GetTags())
		}
		if d.GetScan().GetScanner() != "trivy" || d.GetScan().GetCounts().GetHigh() != 2 {
			t.Errorf("staging scan summary = %v", d.GetScan())
		}
		if d.GetPromotedAt() == nil || d.GetSource().GetRepository() != "team/app" {
			t.Errorf("staging promoted_at/source = %v / %v", d.GetPromotedAt(), d.GetSource())
		}
		if got := tagsAt(t, stagingApp, "v1.2.3", sha); got["v1.2.3"] != img.DigestStr() || got[sha] != img.DigestStr() {
			t.Errorf("staging tags in the registry = %v", got)
		}
		if err := verifyAt(ctx, mustDigest(t, d.GetReference()), e.release, true); err != nil {
			t.Errorf("cosign library at staging: %v", err)
		}
		// The other key must not verify it, or the check above proves nothing.
		if err := verifyAt(ctx, mustDigest(t, d.GetReference()), e.rogue, false); err == nil {
			t.Error("the rogue key verified the staging copy")
		}
	})

	t.Run("redelivered signed event copies and records nothing", func(t *testing.T) {
		before := e.promotedCount(t)
		seq := signedEvt(t, e.pub, img, sha, "signed-app-1-again")
		e.consumerDone(t, seq)
		if after := e.promotedCount(t); after != before {
			t.Errorf("artifact.promoted events went from %d to %d", before, after)
		}
	})

	t.Run("manual promotion to prod through the API", func(t *testing.T) {
		resp, err := e.api.Promote(ctx, &customsv1.PromoteRequest{
			Selector:    &customsv1.PromoteRequest_Reference{Reference: e.dev + "/team/app:v1.2.3"},
			Environment: "prod", Actor: "alice", Reason: "release 1.2.3",
		})
		if err != nil {
			t.Fatalf("Promote: %v", err)
		}
		if resp.GetPromotion().GetTargetReference() != prodApp+"@"+img.DigestStr() || resp.GetPromotion().GetActor() != "alice" {
			t.Errorf("Promote = %v", resp)
		}
		d := e.deployment(t, "prod", prodApp, img.DigestStr())
		if d.GetReference() != prodApp+"@"+img.DigestStr() || !strings.Contains(d.GetReason(), "release 1.2.3") {
			t.Errorf("prod deployment = %v", d)
		}
		if err := verifyAt(ctx, mustDigest(t, d.GetReference()), e.release, true); err != nil {
			t.Errorf("cosign library at prod: %v", err)
		}
		writes := e.prodWrites.Load()
		if writes == 0 {
			t.Fatal("the promotion wrote nothing to the prod registry")
		}
		again, err := e.api.Promote(ctx, &customsv1.PromoteRequest{
			Selector: &customsv1.PromoteRequest_Digest{Digest: img.DigestStr()}, Environment: "prod", Actor: "alice", Reason: "again",
		})
		if err != nil || !again.GetAlreadyPromoted() {
			t.Errorf("second Promote = %v, %v; want already promoted", again, err)
		}
		if got := e.prodWrites.Load(); got != writes {
			t.Errorf("the repeated promotion wrote %d more requests to the prod registry", got-writes)
		}
	})

	t.Run("stock cosign CLI verifies at the target", func(t *testing.T) {
		if testing.Short() {
			t.Skip("-short: skipping the stock cosign CLI build")
		}
		cli := testkit.CosignCLI(t)
		ref := prodApp + "@" + img.DigestStr()
		for _, args := range [][]string{
			{"verify", "--key", e.release.file, ref},
			{"verify-attestation", "--key", e.release.file, "--type", "cyclonedx", ref},
		} {
			out, err := testkit.RunCosign(t, cli, e.release.file, args...)
			if err != nil || !bytes.Contains(out, []byte(img.DigestStr()[len("sha256:"):])) && !bytes.Contains(out, []byte(`"payload"`)) {
				t.Errorf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
		if out, err := testkit.RunCosign(t, cli, e.rogue.file, "verify", "--key", e.rogue.file, ref); err == nil {
			t.Errorf("cosign verify with the rogue key succeeded:\n%s", out)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		// Unsigned image, promoted by hand.
		unsigned := pushImage(t, e.dev, "team/unsigned", "v1.0.0")
		e.awaitPushed(t, unsigned, "v1.0.0")
		e.consumerDone(t, scanned(t, e.pub, unsigned, "v1.0.0", 0))
		_, err := e.api.Promote(ctx, &customsv1.PromoteRequest{
			Selector: &customsv1.PromoteRequest_Digest{Digest: unsigned.DigestStr()}, Environment: "staging", Actor: "bob", Reason: "try",
		})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "no signature") {
			t.Errorf("Promote of an unsigned image = %v, want FailedPrecondition: no signature", err)
		}

		// Signed, but by a key nobody configured.
		rogue := pushImage(t, e.dev, "team/rogue", "v1.0.0")
		sign(t, rogue, e.rogue)
		e.awaitPushed(t, rogue, "v1.0.0")
		scanned(t, e.pub, rogue, "v1.0.0", 0)
		signedEvt(t, e.pub, rogue, "v1.0.0", "signed-rogue")
		if st := e.rejection(t, rogue.DigestStr()); !strings.Contains(st.GetReason(), "no signature in the registry verifies") {
			t.Errorf("unknown key: reason %q", st.GetReason())
		}

		// A forged artifact.signed, straight to NATS, for an image nobody
		// signed.
		forged := pushImage(t, e.dev, "team/forged", "v1.0.0")
		e.awaitPushed(t, forged, "v1.0.0")
		scanned(t, e.pub, forged, "v1.0.0", 0)
		signedEvt(t, e.pub, forged, "v1.0.0", "signed-forged")
		if st := e.rejection(t, forged.DigestStr()); !strings.Contains(st.GetReason(), "no signature") {
			t.Errorf("forged event: reason %q", st.GetReason())
		}

		// latest: scanned and signed, never promoted, and the API says why.
		latest := pushImage(t, e.dev, "team/web", "latest")
		sign(t, latest, e.release)
		e.awaitPushed(t, latest, "latest")
		scanned(t, e.pub, latest, "latest", 0)
		signedEvt(t, e.pub, latest, "latest", "signed-latest")
		st := e.rejection(t, latest.DigestStr())
		if !strings.Contains(st.GetReason(), `"latest" is a floating tag`) {
			t.Errorf("latest: reason %q", st.GetReason())
		}
		if got := tagsAt(t, e.dev+"/staging/team/web", "latest"); !strings.HasPrefix(got["latest"], "missing") {
			t.Errorf("latest reached staging: %v", got)
		}

		// prod before staging: staging refuses the critical finding, and
		// prod requires staging.
		critical := pushImage(t, e.dev, "team/api", "v2.0.0")
		sign(t, critical, e.release)
		attestSBOM(t, critical, e.release)
		e.awaitPushed(t, critical, "v2.0.0")
		scanned(t, e.pub, critical, "v2.0.0", 1)
		signedEvt(t, e.pub, critical, "v2.0.0", "signed-critical")
		if st := e.rejection(t, critical.DigestStr()); !strings.Contains(st.GetReason(), "critical findings exceed") {
			t.Errorf("critical: reason %q", st.GetReason())
		}
		_, err = e.api.Promote(ctx, &customsv1.PromoteRequest{
			Selector: &customsv1.PromoteRequest_Digest{Digest: critical.DigestStr()}, Environment: "prod", Actor: "bob", Reason: "hotfix",
		})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "must be promoted to staging before prod") {
			t.Errorf("prod before staging = %v", err)
		}
		if got := tagsAt(t, e.prod+"/prod/team/api", "v2.0.0"); !strings.HasPrefix(got["v2.0.0"], "missing") {
			t.Errorf("refused image reached prod: %v", got)
		}

		// A forged artifact.scanned cannot hide what a trusted key attested:
		// the event says no critical finding, the signed vuln attestation
		// says one, and the attestation decides.
		hidden := pushImage(t, e.dev, "team/hidden", "v1.0.0")
		sign(t, hidden, e.release)
		attestVulns(t, hidden, e.release, "CRITICAL", "LOW")
		e.awaitPushed(t, hidden, "v1.0.0")
		scanned(t, e.pub, hidden, "v1.0.0", 0)
		signedEvt(t, e.pub, hidden, "v1.0.0", "signed-hidden")
		st = e.rejection(t, hidden.DigestStr())
		if !strings.Contains(st.GetReason(), "1 critical findings exceed") || !slices.ContainsFunc(st.GetDetails(), func(d string) bool {
			return strings.HasPrefix(d, "severity from the vuln attestation signed by release")
		}) {
			t.Errorf("forged scan: reason %q, details %q", st.GetReason(), st.GetDetails())
		}
	})

	t.Run("a new version, then a rollback", func(t *testing.T) {
		next := pushImage(t, e.dev, "team/app", "v1.2.4")
		sign(t, next, e.release)
		e.awaitPushed(t, next, "v1.2.4")
		// Only the version was pushed; the git SHA comes from provenance.
		scannedWith(t, e.pub, next, "v1.2.4", 0, &customsv1.Provenance{GitSha: "abcdef1", SourceRepository: "https://example.com/app"})
		signedEvt(t, e.pub, next, "v1.2.4", "signed-app-2")
		if d := e.deployment(t, "staging", stagingApp, next.DigestStr()); !slices.Equal(d.GetTags(), []string{"abcdef1", "v1.2.4"}) {
			t.Errorf("staging tags = %v, want the provenance git SHA too", d.GetTags())
		}
		if got := tagsAt(t, stagingApp, "abcdef1"); got["abcdef1"] != next.DigestStr() {
			t.Errorf("git SHA tag at staging = %v", got)
		}

		resp, err := e.api.Rollback(ctx, &customsv1.RollbackRequest{Environment: "staging", Application: stagingApp, Actor: "carol", Reason: "v1.2.4 breaks login"})
		if err != nil {
			t.Fatalf("Rollback: %v", err)
		}
		if resp.GetDigest() != img.DigestStr() {
			t.Errorf("rolled back to %s, want %s", resp.GetDigest(), img.DigestStr())
		}
		d := e.deployment(t, "staging", stagingApp, img.DigestStr())
		if d.GetActor() != "carol" || !strings.HasPrefix(d.GetReason(), "rollback") {
			t.Errorf("after rollback = %v", d)
		}
		list, err := e.api.ListPromotions(ctx, &customsv1.ListPromotionsRequest{Environment: "staging", Repository: "team/app"})
		if err != nil {
			t.Fatal(err)
		}
		var digests []string
		for _, p := range list.GetPromotions() {
			digests = append(digests, p.GetDigest())
		}
		if want := []string{img.DigestStr(), next.DigestStr(), img.DigestStr()}; !slices.Equal(digests, want) {
			t.Errorf("staging history = %v, want %v", digests, want)
		}
	})

	t.Run("a moved tag is recorded, surfaced, and blocks prod", func(t *testing.T) {
		// v1.2.3 now names a different image.
		moved := pushImage(t, e.dev, "team/app", "v1.2.3")
		sign(t, moved, e.release)
		attestSBOM(t, moved, e.release)
		e.awaitPushed(t, moved, "v1.2.3")
		scanned(t, e.pub, moved, "v1.2.3", 0)
		signedEvt(t, e.pub, moved, "v1.2.3", "signed-moved")
		// Staging does not block moves, but says one happened at the target.
		d := e.deployment(t, "staging", stagingApp, moved.DigestStr())
		if !strings.Contains(d.GetReason(), `tag "v1.2.3" moved from `+img.DigestStr()) {
			t.Errorf("staging reason %q does not report the tag move", d.GetReason())
		}
		art, err := e.api.GetArtifact(ctx, &customsv1.GetArtifactRequest{Selector: &customsv1.GetArtifactRequest_Digest{Digest: moved.DigestStr()}})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(art.GetArtifact().GetTagHistory(), func(h *customsv1.TagHistoryEntry) bool {
			return h.GetTag() == "v1.2.3" && h.GetAction() == customsv1.TagAction_TAG_ACTION_MOVED_IN && h.GetOtherDigest() == img.DigestStr()
		}) {
			t.Errorf("tag history %v has no move of v1.2.3", art.GetArtifact().GetTagHistory())
		}
		_, err = e.api.Promote(ctx, &customsv1.PromoteRequest{
			Selector: &customsv1.PromoteRequest_Digest{Digest: moved.DigestStr()}, Environment: "prod", Actor: "alice", Reason: "release",
		})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), `tag "v1.2.3" moved`) {
			t.Errorf("Promote of a moved tag to prod = %v, want FailedPrecondition about the move", err)
		}
	})

	t.Run("rules reload: staging switched to manual", func(t *testing.T) {
		manual := strings.Replace(fmt.Sprintf(rulesTmpl, e.prod), "auto: true", "auto: false", 1)
		if err := os.WriteFile(e.rulesFile, []byte(manual), 0o600); err != nil {
			t.Fatal(err)
		}
		// The service polls every 100ms; a broken file in between would be
		// ignored, so give it a few cycles.
		time.Sleep(500 * time.Millisecond)
		d := pushImage(t, e.dev, "team/reload", "v3.0.0")
		sign(t, d, e.release)
		e.awaitPushed(t, d, "v3.0.0")
		scanned(t, e.pub, d, "v3.0.0", 0)
		e.consumerDone(t, signedEvt(t, e.pub, d, "v3.0.0", "signed-reload"))
		resp, err := e.api.GetEnvironment(ctx, &customsv1.GetEnvironmentRequest{Name: "staging"})
		if err != nil {
			t.Fatal(err)
		}
		for _, dep := range resp.GetEnvironment().GetDeployments() {
			if strings.HasSuffix(dep.GetReference(), "@"+d.DigestStr()) {
				t.Errorf("auto-promoted after the rules made staging manual: %v", dep)
			}
		}
		// A manual promotion still works.
		if _, err := e.api.Promote(ctx, &customsv1.PromoteRequest{
			Selector: &customsv1.PromoteRequest_Digest{Digest: d.DigestStr()}, Environment: "staging", Actor: "dave", Reason: "manual now",
		}); err != nil {
			t.Errorf("manual Promote after reload: %v", err)
		}
		e.deployment(t, "staging", e.dev+"/staging/team/reload", d.DigestStr())
	})

	t.Run("rescan re-publishes the push", func(t *testing.T) {
		resp, err := e.api.RequestRescan(ctx, &customsv1.RequestRescanRequest{Digest: img.DigestStr(), RequestId: "r1"})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetEventId() != backbone.EventID("rescan", img.DigestStr(), "r1") {
			t.Errorf("event id = %s", resp.GetEventId())
		}
		// Webhooks for the promotions' own pushes land on the same subject,
		// so look for the rescan by its id.
		cons, err := e.js.OrderedConsumer(ctx, backbone.StreamArtifacts, jetstream.OrderedConsumerConfig{FilterSubjects: []string{backbone.SubjectPushed}})
		if err != nil {
			t.Fatal(err)
		}
		var found *customsv1.Event
		for found == nil {
			batch, err := cons.FetchNoWait(100)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for msg := range batch.Messages() {
				n++
				if msg.Headers().Get("Nats-Msg-Id") == resp.GetEventId() {
					found = &customsv1.Event{}
					if err := proto.Unmarshal(msg.Data(), found); err != nil {
						t.Fatal(err)
					}
				}
			}
			if n == 0 {
				break
			}
		}
		if found == nil || found.GetPushed().GetSource() != "rescan" || found.GetArtifact().GetDigest() != img.DigestStr() {
			t.Errorf("rescan event = %v", found)
		}
	})
}

// TestPromotionWithRealSigner is the `make run` acceptance path with the
// real signer service: an image pushed as team/app:v1.2.3 plus its git SHA
// tag is scanned (synthetic event), signed and attested by the signer,
// and ends up in staging pinned by digest and verifiable with the
// signer's cosign.pub; a latest push is signed but never promoted, and
// the API says why.
func TestPromotionWithRealSigner(t *testing.T) {
	e := start(t, startOpts{withSigner: true})
	ctx := context.Background()
	signerKey := &testKey{file: e.signerPub}
	var err error
	if signerKey.pubPEM, err = os.ReadFile(e.signerPub); err != nil {
		t.Fatal(err)
	}

	const sha = "0a1b2c3d4e5f"
	img := pushImage(t, e.dev, "team/app", "v1.2.3", sha)
	e.awaitPushed(t, img, "v1.2.3", sha)
	scanned(t, e.pub, img, "v1.2.3", 0)
	stagingApp := e.dev + "/staging/team/app"
	d := e.deployment(t, "staging", stagingApp, img.DigestStr())
	if d.GetReference() != stagingApp+"@"+img.DigestStr() || !slices.Equal(d.GetTags(), []string{sha, "v1.2.3"}) {
		t.Errorf("staging deployment = %v", d)
	}
	if d.GetSignature().GetKeyId() == "" || d.GetScan().GetScanner() != "trivy" {
		t.Errorf("staging deployment lacks the sign or scan summary: %v", d)
	}
	// The signer's signature and its vuln attestation verify at the target.
	if err := verifyAt(ctx, mustDigest(t, d.GetReference()), signerKey, true); err != nil {
		t.Errorf("signer's signature at staging: %v", err)
	}

	latest := pushImage(t, e.dev, "team/web", "latest")
	e.awaitPushed(t, latest, "latest")
	scanned(t, e.pub, latest, "latest", 0)
	st := e.rejection(t, latest.DigestStr())
	if !strings.Contains(st.GetReason(), `"latest" is a floating tag`) {
		t.Errorf("latest: reason %q", st.GetReason())
	}
	art, err := e.api.GetArtifact(ctx, &customsv1.GetArtifactRequest{Selector: &customsv1.GetArtifactRequest_Digest{Digest: latest.DigestStr()}})
	if err != nil {
		t.Fatal(err)
	}
	if art.GetArtifact().GetSignature() == nil {
		t.Error("the latest image was not signed by the signer, so the test proves nothing about promotion")
	}
}
