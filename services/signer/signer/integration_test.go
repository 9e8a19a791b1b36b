package signer_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"google.golang.org/protobuf/proto"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/testkit"
	"github.com/customs-dev/customs/services/signer/signer"
)

// env is one running signer with its real NATS and registry.
type env struct {
	js    jetstream.JetStream
	host  string
	keys  signer.KeyPairFiles
	svc   *signer.Service
	pub   *backbone.Publisher
	reg   []byte // public key PEM
	store jetstream.ObjectStore
}

func startSigner(t *testing.T) *env {
	t.Helper()
	nc := testkit.NATS(t)
	host := testkit.Registry(t, "", "")
	keys := keyPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := signer.NewService(ctx, signer.ServiceConfig{
		Key:             keys.PrivateKey,
		KeyPasswordFile: keys.Password,
		Concurrency:     4,
		MaxDeliver:      3,
	}, nc.JS, testkit.Logger(t), allowList(t, host+";plain-http,"+deadRegistry+";plain-http"))
	if err != nil {
		cancel()
		t.Fatalf("NewService: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	pub, err := os.ReadFile(keys.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pub, svc.PublicKeyPEM()) {
		t.Fatalf("service public key differs from %s", keys.PublicKey)
	}
	store, err := backbone.EnsureReportStore(ctx, nc.JS, 1)
	if err != nil {
		t.Fatal(err)
	}
	return &env{js: nc.JS, host: host, keys: keys, svc: svc, pub: backbone.NewPublisher(nc.JS), reg: pub, store: store}
}

// deadRegistry is allowed but nothing listens there: port 1 on loopback.
const deadRegistry = "127.0.0.1:1"

func (e *env) publish(t *testing.T, evt *customsv1.Event) uint64 {
	t.Helper()
	res, err := e.pub.Publish(context.Background(), evt)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	return res.Sequence
}

// waitHandled waits until the signer has acked everything up to seq.
func (e *env) waitHandled(t *testing.T, seq uint64) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		c, err := e.js.Consumer(ctx, backbone.StreamArtifacts, signer.Durable)
		if err == nil {
			info, err := c.Info(ctx)
			if err == nil && info.AckFloor.Stream >= seq && info.NumAckPending == 0 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("signer did not ack stream sequence %d", seq)
}

func layerCount(t *testing.T, tag func(name.Reference, ...ociremote.Option) (name.Tag, error), d name.Digest) int {
	t.Helper()
	tg, err := tag(d)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(tg)
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
		return 0
	}
	if err != nil {
		t.Fatalf("fetch %s: %v", tg, err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	return len(layers)
}

func TestSignerEndToEnd(t *testing.T) {
	t.Parallel()
	e := startSigner(t)
	ctx := context.Background()

	high := []*customsv1.Finding{{VulnerabilityId: "CVE-2024-0727", PackageName: "libcrypto3", InstalledVersion: "3.1.4-r2",
		FixedVersion: "3.1.4-r5", Severity: customsv1.Severity_SEVERITY_HIGH}}
	clean := pushImage(t, e.host, "team/app", "v1")
	storeReports(t, e.js, clean, testdata(t, "trivy-high.json"), testdata(t, "sbom.cdx.json"))
	scanned := scannedEvent(clean, "v1", high, false)
	e.publish(t, scanned)
	signedEvt := waitEvent(t, e.js, backbone.SubjectSigned, clean.DigestStr())

	t.Run("clean image is signed and the event says how", func(t *testing.T) {
		s := signedEvt.GetSigned()
		if s == nil {
			t.Fatalf("event %v has no signed payload", signedEvt)
		}
		if s.GetKeyId() != e.svc.KeyID() || !strings.HasPrefix(s.GetKeyId(), "sha256:") {
			t.Errorf("key id = %q, want %q", s.GetKeyId(), e.svc.KeyID())
		}
		if s.GetPolicy() != "default@builtin" {
			t.Errorf("policy = %q", s.GetPolicy())
		}
		if signedEvt.GetId() != backbone.EventID("signed", clean.DigestStr(), e.svc.KeyID()) {
			t.Errorf("event id %q is not the deterministic one", signedEvt.GetId())
		}
		if signedEvt.GetCorrelationId() != scanned.GetCorrelationId() {
			t.Errorf("correlation id = %q, want %q", signedEvt.GetCorrelationId(), scanned.GetCorrelationId())
		}
		sigTag, _ := ociremote.SignatureTag(clean)
		desc, err := remote.Head(sigTag)
		if err != nil {
			t.Fatalf("head %s: %v", sigTag, err)
		}
		if desc.Digest.String() != s.GetSignatureDigest() {
			t.Errorf("signature digest = %s, registry has %s at %s", s.GetSignatureDigest(), desc.Digest, sigTag)
		}
		var types []string
		for _, a := range s.GetAttestations() {
			types = append(types, a.GetPredicateType())
			if !strings.HasPrefix(a.GetDigest(), "sha256:") {
				t.Errorf("attestation %s digest %q", a.GetPredicateType(), a.GetDigest())
			}
		}
		want := []string{"https://cosign.sigstore.dev/attestation/vuln/v1", "https://cyclonedx.org/bom", "https://slsa.dev/provenance/v1"}
		if !slices.Equal(types, want) {
			t.Errorf("attestation types = %q, want %q", types, want)
		}
	})

	t.Run("cosign library verifies the signature with the public key", func(t *testing.T) {
		sigs, _, err := cosign.VerifyImageSignatures(ctx, clean, checkOpts(t, e.reg, func(co *cosign.CheckOpts) {
			co.ClaimVerifier = cosign.SimpleClaimVerifier
			co.Annotations = map[string]any{signer.AnnotationPolicy: "default@builtin", signer.AnnotationScanner: "trivy"}
		}))
		if err != nil {
			t.Fatalf("VerifyImageSignatures: %v", err)
		}
		if len(sigs) != 1 {
			t.Fatalf("verified %d signatures, want 1", len(sigs))
		}
		pl, _ := sigs[0].Payload()
		if !bytes.Contains(pl, []byte(`"dev.customs.scanner.db-version":"2@2026-11-28T06:00:00Z"`)) {
			t.Errorf("payload lacks the DB version annotation: %s", pl)
		}
	})

	t.Run("cosign library verifies the attestations", func(t *testing.T) {
		atts, _, err := cosign.VerifyImageAttestations(ctx, clean, checkOpts(t, e.reg, func(co *cosign.CheckOpts) {
			co.ClaimVerifier = cosign.IntotoSubjectClaimVerifier
		}))
		if err != nil {
			t.Fatalf("VerifyImageAttestations: %v", err)
		}
		got := map[string]map[string]any{}
		for _, a := range atts {
			env, _ := a.Payload()
			var dsse struct{ Payload string }
			if err := json.Unmarshal(env, &dsse); err != nil {
				t.Fatal(err)
			}
			body, _ := base64.StdEncoding.DecodeString(dsse.Payload)
			var stmt struct {
				PredicateType string         `json:"predicateType"`
				Predicate     map[string]any `json:"predicate"`
			}
			if err := json.Unmarshal(body, &stmt); err != nil {
				t.Fatal(err)
			}
			got[stmt.PredicateType] = stmt.Predicate
		}
		if got["https://cyclonedx.org/bom"]["bomFormat"] != "CycloneDX" {
			t.Errorf("cyclonedx predicate is not the stored SBOM: %v", got["https://cyclonedx.org/bom"])
		}
		vuln, _ := json.Marshal(got["https://cosign.sigstore.dev/attestation/vuln/v1"])
		if !bytes.Contains(vuln, []byte("CVE-2024-0727")) || !bytes.Contains(vuln, []byte(`"version":"2@2026-11-28T06:00:00Z"`)) {
			t.Errorf("vuln predicate lacks the report or DB version: %s", vuln)
		}
		slsa, _ := json.Marshal(got["https://slsa.dev/provenance/v1"])
		if !bytes.Contains(slsa, []byte("4b825dc642cb6eb9a060e54bf8d69288fbee4904")) || !bytes.Contains(slsa, []byte("workflows/build.yml")) {
			t.Errorf("slsa predicate lacks the git sha or builder: %s", slsa)
		}
	})

	t.Run("redelivered and duplicate scanned events do not sign again", func(t *testing.T) {
		before := layerCount(t, ociremote.SignatureTag, clean)
		if before != 1 {
			t.Fatalf("%d signature layers before the duplicate, want 1", before)
		}
		// A new event id, as a rescan would publish: the stream does not
		// drop it, so the signer itself must notice the signature.
		dup := proto.Clone(scanned).(*customsv1.Event)
		dup.Id = backbone.EventID("scanned", clean.DigestStr(), "rescan")
		seq := e.publish(t, dup)
		e.waitHandled(t, seq)
		if n := layerCount(t, ociremote.SignatureTag, clean); n != 1 {
			t.Errorf("%d signature layers after the duplicate, want 1", n)
		}
		if n := layerCount(t, ociremote.AttestationTag, clean); n != 3 {
			t.Errorf("%d attestation layers after the duplicate, want 3", n)
		}
	})

	t.Run("concurrent duplicates of one digest sign it once", func(t *testing.T) {
		d := pushImage(t, e.host, "team/race", "v1")
		storeReports(t, e.js, d, testdata(t, "trivy-high.json"), testdata(t, "sbom.cdx.json"))
		var last uint64
		for i := range 6 {
			evt := scannedEvent(d, "v1", high, false)
			evt.Id = backbone.EventID("scanned", d.DigestStr(), "dup", strconv.Itoa(i))
			last = e.publish(t, evt)
		}
		e.waitHandled(t, last)
		if n := layerCount(t, ociremote.SignatureTag, d); n != 1 {
			t.Errorf("%d signature layers, want 1", n)
		}
		// Only the first artifact.signed is kept (same id); it must name the
		// .sig manifest the registry ended up with.
		s := waitEvent(t, e.js, backbone.SubjectSigned, d.DigestStr()).GetSigned()
		desc, err := remote.Head(mustTag(t, ociremote.SignatureTag, d))
		if err != nil {
			t.Fatal(err)
		}
		if desc.Digest.String() != s.GetSignatureDigest() {
			t.Errorf("artifact.signed names %s, registry has %s", s.GetSignatureDigest(), desc.Digest)
		}
		if n := layerCount(t, ociremote.AttestationTag, d); n != 3 {
			t.Errorf("%d attestation layers, want 3", n)
		}
	})

	t.Run("image over the threshold is rejected with reasons and never signed", func(t *testing.T) {
		bad := pushImage(t, e.host, "team/bad", "v1")
		storeReports(t, e.js, bad, testdata(t, "trivy-critical.json"), testdata(t, "sbom.cdx.json"))
		crit := []*customsv1.Finding{{VulnerabilityId: "CVE-2024-3094", PackageName: "liblzma5", InstalledVersion: "5.6.0-0.2",
			FixedVersion: "5.6.1+really5.4.5-1", Severity: customsv1.Severity_SEVERITY_CRITICAL, Target: "debian 12.4"}}
		e.publish(t, scannedEvent(bad, "v1", crit, false))
		rej := waitEvent(t, e.js, backbone.SubjectRejected, bad.DigestStr()).GetRejected()
		if rej.GetStage() != customsv1.Stage_STAGE_SIGN {
			t.Errorf("stage = %v", rej.GetStage())
		}
		if len(rej.GetDetails()) != 1 || !strings.Contains(rej.GetDetails()[0], "CVE-2024-3094 CRITICAL in liblzma5") {
			t.Errorf("details = %q, want the CVE named", rej.GetDetails())
		}
		if !strings.Contains(rej.GetReason(), "default@builtin") {
			t.Errorf("reason %q does not name the policy", rej.GetReason())
		}
		if n := layerCount(t, ociremote.SignatureTag, bad); n != 0 {
			t.Errorf("rejected image has %d signature layers", n)
		}
		if n := layerCount(t, ociremote.AttestationTag, bad); n != 0 {
			t.Errorf("rejected image has %d attestation layers", n)
		}
	})

	t.Run("truncated findings are judged on the full stored report", func(t *testing.T) {
		trunc := pushImage(t, e.host, "team/trunc", "v1")
		storeReports(t, e.js, trunc, testdata(t, "trivy-critical.json"), testdata(t, "sbom.cdx.json"))
		// The event's bounded list only has the HIGH finding; the stored
		// report also has a CRITICAL one.
		e.publish(t, scannedEvent(trunc, "v1", []*customsv1.Finding{{VulnerabilityId: "CVE-2023-4911", Severity: customsv1.Severity_SEVERITY_HIGH}}, true))
		rej := waitEvent(t, e.js, backbone.SubjectRejected, trunc.DigestStr()).GetRejected()
		if len(rej.GetDetails()) != 1 || !strings.HasPrefix(rej.GetDetails()[0], "CVE-2024-3094 CRITICAL") {
			t.Errorf("details = %q, want the CRITICAL from the stored report", rej.GetDetails())
		}
		if n := layerCount(t, ociremote.SignatureTag, trunc); n != 0 {
			t.Errorf("rejected image has %d signature layers", n)
		}
	})

	t.Run("registry off the allow-list fails the artifact without touching it", func(t *testing.T) {
		evt := scannedEvent(clean, "v1", nil, false)
		evt.Id = "scanned-elsewhere"
		evt.Artifact.Registry = "registry.invalid:5000"
		e.publish(t, evt)
		failed := waitEvent(t, e.js, backbone.SubjectFailed, clean.DigestStr()).GetFailed()
		if failed.GetStage() != customsv1.Stage_STAGE_SIGN || !strings.Contains(failed.GetReason(), "allow-list") {
			t.Errorf("failed = %v", failed)
		}
	})

	t.Run("registry down is a retryable error, not a decision", func(t *testing.T) {
		evt := scannedEvent(clean, "v1", nil, false)
		evt.Artifact.Registry = deadRegistry
		err := e.svc.Handle(ctx, evt)
		if err == nil || backbone.IsTerminal(err) {
			t.Fatalf("Handle = %v, want a retryable error", err)
		}
	})

	t.Run("a new digest under the same tag fails verification", func(t *testing.T) {
		tampered := pushImage(t, e.host, "team/app", "v1")
		if tampered.DigestStr() == clean.DigestStr() {
			t.Fatal("the new image has the old digest")
		}
		tag, _ := name.NewTag(e.host+"/team/app:v1", name.Insecure)
		_, _, err := cosign.VerifyImageSignatures(ctx, tag, checkOpts(t, e.reg, func(co *cosign.CheckOpts) {
			co.ClaimVerifier = cosign.SimpleClaimVerifier
		}))
		if err == nil {
			t.Fatal("the tag now points at an unsigned digest, yet it verified")
		}
		// The old signature does not cover the new digest either: copy it
		// over and verification must still fail on the digest claim.
		sigs, err := ociremote.Signatures(mustTag(t, ociremote.SignatureTag, clean))
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(mustTag(t, ociremote.SignatureTag, tampered), sigs); err != nil {
			t.Fatal(err)
		}
		_, _, err = cosign.VerifyImageSignatures(ctx, tampered, checkOpts(t, e.reg, func(co *cosign.CheckOpts) {
			co.ClaimVerifier = cosign.SimpleClaimVerifier
		}))
		if err == nil {
			t.Fatal("a signature for the old digest verified the new one")
		}
	})

	t.Run("stock cosign CLI verifies signature and attestations", func(t *testing.T) {
		if testing.Short() {
			t.Skip("-short: skipping the stock cosign CLI build")
		}
		cli := testkit.CosignCLI(t)
		ref := clean.String()
		cases := [][]string{
			{"verify", "--key", e.keys.PublicKey, ref},
			{"verify-attestation", "--key", e.keys.PublicKey, "--type", "cyclonedx", ref},
			{"verify-attestation", "--key", e.keys.PublicKey, "--type", "vuln", ref},
			{"verify-attestation", "--key", e.keys.PublicKey, "--type", "slsaprovenance1", ref},
		}
		for _, args := range cases {
			out, err := testkit.RunCosign(t, cli, e.keys.PublicKey, args...)
			if err != nil {
				t.Errorf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
				continue
			}
			// Each command prints the verified payloads as JSON on stdout.
			if !bytes.Contains(out, []byte(clean.DigestStr())) && !bytes.Contains(out, []byte(`"payload"`)) {
				t.Errorf("cosign %s printed no verified payload:\n%s", args[0], out)
			}
			t.Logf("cosign %s:\n%.400s", strings.Join(args, " "), out)
		}
		// The CLI must also say no once the tag moves to a new digest, or
		// the passes above prove nothing. Push here so this subtest does
		// not depend on the one above having run.
		pushImage(t, e.host, "team/app", "v1")
		out, err := testkit.RunCosign(t, cli, e.keys.PublicKey, "verify", "--key", e.keys.PublicKey, e.host+"/team/app:v1")
		if err == nil {
			t.Errorf("cosign verify of the tampered tag succeeded:\n%s", out)
		}
		t.Logf("cosign verify of the tampered tag: %v\n%.400s", err, out)
	})
}

func mustTag(t *testing.T, f func(name.Reference, ...ociremote.Option) (name.Tag, error), d name.Digest) name.Tag {
	t.Helper()
	tg, err := f(d)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}
