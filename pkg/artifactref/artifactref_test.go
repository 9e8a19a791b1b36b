package artifactref

import (
	"errors"
	"strings"
	"testing"
)

const dg = "sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    Reference
		wantErr bool
	}{
		{name: "repo and tag", in: "team/app:v1.2.3", want: Reference{Repository: "team/app", Tag: "v1.2.3"}},
		{name: "registry with port", in: "localhost:5000/team/app:v1", want: Reference{Registry: "localhost:5000", Repository: "team/app", Tag: "v1"}},
		{name: "registry with dot", in: "ghcr.io/acme/app:latest", want: Reference{Registry: "ghcr.io", Repository: "acme/app", Tag: "latest"}},
		{name: "digest", in: "ghcr.io/acme/app@" + dg, want: Reference{Registry: "ghcr.io", Repository: "acme/app", Digest: dg}},
		{name: "tag and digest", in: "acme/app:v1@" + dg, want: Reference{Repository: "acme/app", Tag: "v1", Digest: dg}},
		{name: "localhost without port", in: "localhost/app:v1", want: Reference{Registry: "localhost", Repository: "app", Tag: "v1"}},
		{name: "no tag or digest", in: "team/app", wantErr: true},
		{name: "upper case repo", in: "Team/App:v1", wantErr: true},
		{name: "bad digest", in: "app@sha256:abc", wantErr: true},
		{name: "empty", in: "", wantErr: true},
		{name: "bad tag", in: "app:-x", wantErr: true},
		{name: "port only", in: "localhost:5000:v1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Parse(%q) = %+v, %v; want ErrInvalid", tt.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if round, err := Parse(got.String()); err != nil || round != got {
				t.Fatalf("round trip of %q: %+v, %v", got.String(), round, err)
			}
		})
	}
}

func TestValidateDigest(t *testing.T) {
	t.Parallel()
	if err := ValidateDigest(dg); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "sha256:", "sha256:" + strings.ToUpper(dg[7:]), "md5:abcd", dg + "0"} {
		if err := ValidateDigest(bad); err == nil {
			t.Errorf("ValidateDigest(%q) = nil, want error", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"team/app:v1", "localhost:5000/a/b@" + dg, "a:b:c", "@", ":"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(ref.String())
		if err != nil || again != ref {
			t.Fatalf("Parse(%q) = %+v but its String %q parses to %+v, %v", s, ref, ref.String(), again, err)
		}
	})
}
