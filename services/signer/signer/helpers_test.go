package signer_test

import (
	"context"
	"crypto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/registries"
	"github.com/customs-dev/customs/services/signer/signer"
)

// keyPair generates a cosign key pair once per test binary: scrypt makes
// every generation cost most of a second.
var sharedKeys struct {
	files signer.KeyPairFiles
	err   error
	done  bool
}

func keyPair(t testing.TB) signer.KeyPairFiles {
	t.Helper()
	if !sharedKeys.done {
		dir, err := os.MkdirTemp("", "signer-keys-")
		if err != nil {
			t.Fatal(err)
		}
		sharedKeys.files, _, sharedKeys.err = signer.EnsureKeyPair(dir)
		sharedKeys.done = true
	}
	if sharedKeys.err != nil {
		t.Fatalf("EnsureKeyPair: %v", sharedKeys.err)
	}
	return sharedKeys.files
}

func loadKey(t testing.TB, files signer.KeyPairFiles) *signer.Key {
	t.Helper()
	pw, err := os.ReadFile(files.Password)
	if err != nil {
		t.Fatal(err)
	}
	k, err := signer.LoadKey(context.Background(), files.PrivateKey, []byte(strings.TrimSpace(string(pw))))
	if err != nil {
		t.Fatalf("LoadKey: %v", err)
	}
	return k
}

// pushImage pushes a fresh random image to host/repo:tag and returns it by
// digest.
func pushImage(t testing.TB, host, repo, tag string) name.Digest {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag(host+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return ref.Context().Digest(d.String())
}

func allowList(t testing.TB, spec string) *registries.AllowList {
	t.Helper()
	al, err := registries.Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	return al
}

func testdata(t testing.TB, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// scannedEvent is what the scanner would publish for d.
func scannedEvent(d name.Digest, tag string, findings []*customsv1.Finding, truncated bool) *customsv1.Event {
	return &customsv1.Event{
		Id: backbone.EventID("scanned", d.DigestStr(), "test"),
		Artifact: &customsv1.ArtifactRef{
			Registry:   d.RegistryStr(),
			Repository: d.RepositoryStr(),
			Digest:     d.DigestStr(),
			MediaType:  "application/vnd.oci.image.manifest.v1+json",
			Tag:        tag,
		},
		OccurredAt:    timestamppb.Now(),
		CorrelationId: "corr-" + d.DigestStr()[7:19],
		Producer:      "scanner",
		Payload: &customsv1.Event_Scanned{Scanned: &customsv1.ArtifactScanned{
			Summary: &customsv1.ScanSummary{
				Scanner: "trivy", ScannerVersion: "0.74.0", DbVersion: "2@2026-11-28T06:00:00Z",
				ScannedAt: timestamppb.Now(),
			},
			Findings:          findings,
			FindingsTruncated: truncated,
			ReportObject:      backbone.ReportObject(d.DigestStr()),
			SbomObject:        backbone.SBOMObject(d.DigestStr()),
			Provenance: &customsv1.Provenance{
				SourceRepository: "https://github.com/acme/app",
				GitSha:           "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
				Builder:          "https://github.com/acme/app/.github/workflows/build.yml@refs/heads/main",
			},
		}},
	}
}

// storeReports puts the report and SBOM where the scanner would.
func storeReports(t testing.TB, js jetstream.JetStream, d name.Digest, report, sbom []byte) {
	t.Helper()
	ctx := context.Background()
	os, err := backbone.EnsureReportStore(ctx, js, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.PutBytes(ctx, backbone.ReportObject(d.DigestStr()), report); err != nil {
		t.Fatal(err)
	}
	if _, err := os.PutBytes(ctx, backbone.SBOMObject(d.DigestStr()), sbom); err != nil {
		t.Fatal(err)
	}
}

// waitEvent returns the first event on subject about digest.
func waitEvent(t testing.TB, js jetstream.JetStream, subject, digest string) *customsv1.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, backbone.StreamArtifacts, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			t.Fatalf("waiting for %s of %s: %v", subject, digest, err)
		}
		var evt customsv1.Event
		if err := proto.Unmarshal(msg.Data(), &evt); err != nil {
			t.Fatal(err)
		}
		if evt.GetArtifact().GetDigest() == digest {
			return &evt
		}
	}
}

// checkOpts verifies with the public key only: no Rekor, no Fulcio.
func checkOpts(t testing.TB, pubPEM []byte, claims func(*cosign.CheckOpts)) *cosign.CheckOpts {
	t.Helper()
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	co := &cosign.CheckOpts{
		SigVerifier:        v,
		IgnoreTlog:         true,
		IgnoreSCT:          true,
		Offline:            true,
		RegistryClientOpts: []ociremote.Option{ociremote.WithRemoteOptions(remote.WithContext(context.Background()))},
	}
	claims(co)
	return co
}
