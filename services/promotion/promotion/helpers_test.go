package promotion_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/cosign/attestation"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/cosign/v2/pkg/types"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
	"github.com/sigstore/sigstore/pkg/signature/payload"
	"google.golang.org/protobuf/types/known/timestamppb"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/backbone"
)

// testKey is an ECDSA P-256 key, the kind cosign generates, with its
// public key written as cosign.pub would be.
type testKey struct {
	sv     signature.SignerVerifier
	pubPEM []byte
	file   string
}

func newKey(t testing.TB, dir, name string) *testKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadECDSASignerVerifier(priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, name+".pub")
	if err := os.WriteFile(file, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	return &testKey{sv: sv, pubPEM: pub, file: file}
}

// pushImage pushes a fresh random image under every tag and returns it
// by digest.
func pushImage(t testing.TB, host, repo string, tags ...string) name.Digest {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	var d name.Digest
	for _, tag := range tags {
		ref, err := name.NewTag(host+"/"+repo+":"+tag, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img); err != nil {
			t.Fatalf("push %s: %v", ref, err)
		}
	}
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if d, err = name.NewDigest(host+"/"+repo+"@"+h.String(), name.Insecure); err != nil {
		t.Fatal(err)
	}
	return d
}

// sign signs ref with k in cosign's standard format, the way the signer
// service does: a simple-signing payload in the sha256-<hex>.sig image.
func sign(t testing.TB, ref name.Digest, k *testKey) {
	t.Helper()
	pl, err := (&payload.Cosign{Image: ref}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := k.sv.SignMessage(bytes.NewReader(pl))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := static.NewSignature(pl, base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		t.Fatal(err)
	}
	se, err := ociremote.SignedEntity(ref)
	if err != nil {
		t.Fatal(err)
	}
	se, err = mutate.AttachSignatureToEntity(se, sig)
	if err != nil {
		t.Fatal(err)
	}
	if err := ociremote.WriteSignatures(ref.Repository, se); err != nil {
		t.Fatalf("write signature: %v", err)
	}
}

// attestSBOM attaches a signed CycloneDX attestation to ref.
func attestSBOM(t testing.TB, ref name.Digest, k *testKey) {
	t.Helper()
	attest(t, ref, k, "cyclonedx", "https://cyclonedx.org/bom", `{"bomFormat":"CycloneDX","specVersion":"1.6","components":[]}`)
}

// attestVulns attaches a signed cosign vuln attestation to ref whose
// result is a Trivy-shaped report with one finding per severity given.
func attestVulns(t testing.TB, ref name.Digest, k *testKey, severities ...string) {
	t.Helper()
	var vulns []map[string]string
	for i, s := range severities {
		vulns = append(vulns, map[string]string{"VulnerabilityID": fmt.Sprintf("CVE-2024-%04d", i+1), "PkgName": "openssl", "Severity": s})
	}
	at := time.Now().UTC().Format(time.RFC3339)
	pred, err := json.Marshal(map[string]any{
		"invocation": map[string]any{"uri": "test"},
		"scanner": map[string]any{"uri": "pkg:github/aquasecurity/trivy", "version": "0.74.0",
			"db":     map[string]any{"uri": "pkg:github/aquasecurity/trivy-db", "version": "2"},
			"result": map[string]any{"SchemaVersion": 2, "Results": []any{map[string]any{"Target": "test", "Vulnerabilities": vulns}}}},
		"metadata": map[string]any{"scanStartedOn": at, "scanFinishedOn": at},
	})
	if err != nil {
		t.Fatal(err)
	}
	attest(t, ref, k, "vuln", attestation.CosignVulnProvenanceV01, string(pred))
}

// attest attaches a signed in-toto attestation of cosign predicate type
// typ (its URI predicateType) to ref, as `cosign attest` does.
func attest(t testing.TB, ref name.Digest, k *testKey, typ, predicateType, predicate string) {
	t.Helper()
	stmt, err := attestation.GenerateStatement(attestation.GenerateOpts{
		Predicate: bytes.NewReader([]byte(predicate)),
		Type:      typ,
		Digest:    ref.DigestStr()[len("sha256:"):],
		Repo:      ref.Repository.String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(stmt)
	if err != nil {
		t.Fatal(err)
	}
	env, err := dsse.WrapSigner(k.sv, types.IntotoPayloadType).SignMessage(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	att, err := static.NewAttestation(env, static.WithLayerMediaType(types.DssePayloadType),
		static.WithAnnotations(map[string]string{"predicateType": predicateType}))
	if err != nil {
		t.Fatal(err)
	}
	se, err := ociremote.SignedEntity(ref)
	if err != nil {
		t.Fatal(err)
	}
	if se, err = mutate.AttachAttestationToEntity(se, att); err != nil {
		t.Fatal(err)
	}
	if err := ociremote.WriteAttestations(ref.Repository, se); err != nil {
		t.Fatalf("write attestation: %v", err)
	}
}

func ref(d name.Digest, tag string) *customsv1.ArtifactRef {
	return &customsv1.ArtifactRef{
		Registry: d.RegistryStr(), Repository: d.RepositoryStr(), Digest: d.DigestStr(),
		MediaType: "application/vnd.oci.image.manifest.v1+json", Tag: tag,
	}
}

func publish(t testing.TB, js *backbone.Publisher, evt *customsv1.Event) uint64 {
	t.Helper()
	evt.OccurredAt = timestamppb.Now()
	if evt.Producer == "" {
		evt.Producer = "test"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := js.Publish(ctx, evt)
	if err != nil {
		t.Fatalf("publish %s: %v", evt.GetId(), err)
	}
	return res.Sequence
}

// scanned publishes a synthetic artifact.scanned with a real-shaped
// summary (the scanner is not part of these tests).
func scanned(t testing.TB, pub *backbone.Publisher, d name.Digest, tag string, critical int32) uint64 {
	t.Helper()
	return scannedWith(t, pub, d, tag, critical, nil)
}

// scannedWith is scanned with the build provenance the scanner passes on.
func scannedWith(t testing.TB, pub *backbone.Publisher, d name.Digest, tag string, critical int32, prov *customsv1.Provenance) uint64 {
	t.Helper()
	return publish(t, pub, &customsv1.Event{
		Id: backbone.EventID("scanned", d.String()), Artifact: ref(d, tag), CorrelationId: d.DigestStr(),
		Payload: &customsv1.Event_Scanned{Scanned: &customsv1.ArtifactScanned{Summary: &customsv1.ScanSummary{
			Counts:  &customsv1.SeverityCounts{Critical: critical, High: 2, Medium: 5},
			Scanner: "trivy", ScannerVersion: "0.74.0", DbVersion: "2", PackageCount: 14, ScannedAt: timestamppb.Now(),
		}, Provenance: prov}},
	})
}

// signedEvt publishes artifact.signed; nothing checks that the image
// really is signed, which is what the promotion service must do.
func signedEvt(t testing.TB, pub *backbone.Publisher, d name.Digest, tag, id string) uint64 {
	t.Helper()
	return publish(t, pub, &customsv1.Event{
		Id: id, Artifact: ref(d, tag), CorrelationId: d.DigestStr(),
		Payload: &customsv1.Event_Signed{Signed: &customsv1.ArtifactSigned{KeyId: "sha256:whatever", Policy: "default"}},
	})
}

// verifyAt checks ref's signature (and with atts its attestations) with
// the cosign library and the public key only.
func verifyAt(ctx context.Context, d name.Digest, k *testKey, atts bool) error {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(k.pubPEM)
	if err != nil {
		return err
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return err
	}
	co := &cosign.CheckOpts{SigVerifier: v, IgnoreTlog: true, IgnoreSCT: true, Offline: true, ClaimVerifier: cosign.SimpleClaimVerifier}
	if _, _, err := cosign.VerifyImageSignatures(ctx, d, co); err != nil {
		return err
	}
	if atts {
		co.ClaimVerifier = cosign.IntotoSubjectClaimVerifier
		if _, _, err := cosign.VerifyImageAttestations(ctx, d, co); err != nil {
			return err
		}
	}
	return nil
}
