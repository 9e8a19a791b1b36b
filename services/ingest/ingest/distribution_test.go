package ingest

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/distribution/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseDistributionEnvelope(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		body         string
		registryHost string
		assertions   func(t *testing.T, got Parsed, err error)
	}{
		{
			name: "v2 manifest push",
			body: string(readFixture(t, "v2-manifest-push.json")),
			assertions: func(t *testing.T, got Parsed, err error) {
				if err != nil {
					t.Fatal(err)
				}
				want := []Push{{
					Artifact: &customsv1.ArtifactRef{
						Registry:   "registry.example:5000",
						Repository: "team/app",
						Digest:     "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b",
						MediaType:  "application/vnd.oci.image.manifest.v1+json",
						Tag:        "v1.2.3",
					},
					SourceEventID: "9b2a7f0e-6a3c-4c8e-9a7e-1f0c2d3e4f50",
					Actor:         "ci-bot",
					Size:          527,
					OccurredAt:    time.Date(2026, 11, 28, 10, 0, 0, 123456789, time.UTC),
				}}
				if d := cmp.Diff(want, got.Pushes, protocmp.Transform()); d != "" {
					t.Fatalf("pushes (-want +got):\n%s", d)
				}
				if len(got.Ignored) != 0 {
					t.Fatalf("ignored = %v", got.Ignored)
				}
			},
		},
		{
			name: "v1 envelope keeps the index and ignores blob, pull and delete",
			body: string(readFixture(t, "v1-blob-and-index.json")),
			assertions: func(t *testing.T, got Parsed, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if len(got.Pushes) != 1 || got.Pushes[0].Artifact.GetTag() != "3.19" || got.Pushes[0].Size != 1638 {
					t.Fatalf("pushes = %+v", got.Pushes)
				}
				if len(got.Ignored) != 3 {
					t.Fatalf("ignored = %+v, want blob, pull and delete", got.Ignored)
				}
				for i, want := range []string{"blob pushes are ignored", `"pull" is not a push`, `"delete" is not a push`} {
					if !strings.Contains(got.Ignored[i].Reason, want) {
						t.Errorf("ignored[%d] = %q, want %q", i, got.Ignored[i].Reason, want)
					}
				}
			},
		},
		{
			name:         "registry host override",
			body:         string(readFixture(t, "v2-manifest-push.json")),
			registryHost: "registry.internal",
			assertions: func(t *testing.T, got Parsed, err error) {
				if err != nil || got.Pushes[0].Artifact.GetRegistry() != "registry.internal" {
					t.Fatalf("registry = %v, %v", got.Pushes, err)
				}
			},
		},
		{name: "not json", body: "<xml/>", assertions: wantMalformed("invalid character")},
		{name: "no events", body: `{"other":[]}`, assertions: wantMalformed(`no "events"`)},
		{name: "trailing data", body: `{"events":[]} {}`, assertions: wantMalformed("trailing")},
		{name: "bad digest in a push", body: strings.Replace(string(readFixture(t, "v2-manifest-push.json")), "sha256:6c3c", "sha256:XXXX", 2), assertions: wantMalformed("digest")},
		{name: "bad tag", body: strings.Replace(string(readFixture(t, "v2-manifest-push.json")), `"v1.2.3"`, `"-bad"`, 1), assertions: wantMalformed("tag")},
		{name: "no timestamp", body: strings.Replace(string(readFixture(t, "v2-manifest-push.json")), `"timestamp": "2026-11-28T10:00:00.123456789Z",`, "", 1), assertions: wantMalformed("timestamp")},
		{name: "no host", body: `{"events":[{"id":"x","timestamp":"2026-01-01T00:00:00Z","action":"push","target":{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:` + strings.Repeat("a", 64) + `","repository":"a"}}]}`, assertions: wantMalformed("no registry host")},
		{name: "empty events", body: `{"events":[]}`, assertions: func(t *testing.T, got Parsed, err error) {
			if err != nil || len(got.Pushes)+len(got.Ignored) != 0 {
				t.Fatalf("got %+v, %v", got, err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseDistributionEnvelope([]byte(tt.body), tt.registryHost)
			tt.assertions(t, got, err)
		})
	}
}

func wantMalformed(reason string) func(t *testing.T, got Parsed, err error) {
	return func(t *testing.T, got Parsed, err error) {
		t.Helper()
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), reason) {
			t.Fatalf("err = %v, want ErrMalformed mentioning %q (got %+v)", err, reason, got)
		}
	}
}

func TestDistributionAuthenticate(t *testing.T) {
	t.Parallel()
	d, err := NewDistribution(DistributionConfig{Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		header string
		want   error
	}{
		{"Bearer s3cret", nil},
		{"bearer s3cret", nil},
		{"", ErrUnauthenticated},
		{"Basic czNjcmV0", ErrUnauthenticated},
		{"Bearer s3cre", ErrForbidden},
		{"Bearer s3cret2", ErrForbidden},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodPost, "/webhooks/distribution", nil)
		if tt.header != "" {
			r.Header.Set("Authorization", tt.header)
		}
		err := d.Authenticate(r, nil)
		if (tt.want == nil) != (err == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("Authorization %q: %v, want %v", tt.header, err, tt.want)
		}
	}
	if _, err := NewDistribution(DistributionConfig{}); err == nil {
		t.Error("NewDistribution without a token succeeded")
	}
}

func FuzzParseDistributionEnvelope(f *testing.F) {
	f.Add(readFixture(f, "v2-manifest-push.json"))
	f.Add(readFixture(f, "v1-blob-and-index.json"))
	f.Add([]byte(`{"events":[{"action":"push","target":{"mediaType":"application/vnd.oci.image.index.v1+json"}}]}`))
	f.Add([]byte(`{"events":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := ParseDistributionEnvelope(body, "")
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		// Whatever is accepted must be publishable.
		for _, p := range got.Pushes {
			evt := PushedEvent("distribution", p)
			if evt.GetId() == "" || evt.GetArtifact().GetDigest() == "" || evt.GetArtifact().GetRepository() == "" || evt.GetArtifact().GetRegistry() == "" {
				t.Fatalf("accepted an unpublishable push: %+v", p)
			}
		}
	})
}
