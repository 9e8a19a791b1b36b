package registries

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	t.Setenv(AuthEnvVar("ghcr.io"), "bot:s3cret")
	al, err := Parse("ghcr.io, localhost:5000;plain-http ,registry.internal;insecure;plain-http")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host    string
		want    Registry
		wantErr error
	}{
		{host: "ghcr.io", want: Registry{Host: "ghcr.io", Username: "bot", Password: "s3cret"}},
		{host: "localhost:5000", want: Registry{Host: "localhost:5000", PlainHTTP: true}},
		{host: "registry.internal", want: Registry{Host: "registry.internal", PlainHTTP: true, Insecure: true}},
		{host: "169.254.169.254", wantErr: ErrNotAllowed},
		{host: "localhost", wantErr: ErrNotAllowed},
	}
	for _, tt := range tests {
		got, err := al.Lookup(tt.host)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Lookup(%q) error = %v, want %v", tt.host, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Lookup(%q) = %+v, %v; want %+v", tt.host, got, err, tt.want)
		}
	}
	if _, _, err := al.Reference("evil.example/x/y:latest"); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("Reference on a host off the list: %v, want ErrNotAllowed", err)
	}
	ref, _, err := al.Reference("localhost:5000/team/app:v1")
	if err != nil || ref.Context().Scheme() != "http" {
		t.Errorf("plain-http reference = %v (%v), want scheme http", ref, err)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, spec := range []string{"ghcr.io;fast", "bad host", "a/b"} {
		if _, err := Parse(spec); err == nil {
			t.Errorf("Parse(%q) = nil error", spec)
		}
	}
}

func TestAuthEnvVar(t *testing.T) {
	t.Parallel()
	if got := AuthEnvVar("localhost:5000"); got != "CUSTOMS_REGISTRY_AUTH_LOCALHOST_5000" {
		t.Fatalf("AuthEnvVar = %q", got)
	}
}
