package signer

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/registries"
)

func TestParseTrivyFindings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		file    string
		doc     string
		want    []string // "id severity target"
		wantErr bool
	}{
		{name: "alpine report", file: "trivy-high.json", want: []string{
			"CVE-2024-0727 SEVERITY_HIGH 127.0.0.1/team/app:v1 (alpine 3.19.1)",
			"CVE-2023-6237 SEVERITY_MEDIUM 127.0.0.1/team/app:v1 (alpine 3.19.1)",
		}},
		{name: "debian report", file: "trivy-critical.json", want: []string{
			"CVE-2024-3094 SEVERITY_CRITICAL 127.0.0.1/team/bad:v1 (debian 12.4)",
			"CVE-2023-4911 SEVERITY_HIGH 127.0.0.1/team/bad:v1 (debian 12.4)",
		}},
		{name: "no results", doc: `{"SchemaVersion":2}`},
		{name: "unknown severity label counts as UNKNOWN", doc: `{"SchemaVersion":2,"Results":[{"Target":"t","Vulnerabilities":[{"VulnerabilityID":"X-1","Severity":"SEVERE"}]}]}`,
			want: []string{"X-1 SEVERITY_UNKNOWN t"}},
		{name: "not JSON", doc: `SchemaVersion: 2`, wantErr: true},
		{name: "not a Trivy report", doc: `{"bomFormat":"CycloneDX"}`, wantErr: true},
		{name: "vulnerability without id", doc: `{"SchemaVersion":2,"Results":[{"Vulnerabilities":[{"Severity":"HIGH"}]}]}`, wantErr: true},
		{name: "wrong shape", doc: `{"SchemaVersion":2,"Results":{"a":1}}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := []byte(tt.doc)
			if tt.file != "" {
				var err error
				if data, err = os.ReadFile(filepath.Join("testdata", tt.file)); err != nil {
					t.Fatal(err)
				}
			}
			fs, err := ParseTrivyFindings(data)
			if tt.wantErr {
				if !errors.Is(err, ErrBadReport) {
					t.Fatalf("err = %v, want ErrBadReport", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range fs {
				got = append(got, f.GetVulnerabilityId()+" "+f.GetSeverity().String()+" "+f.GetTarget())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func FuzzParseTrivyFindings(f *testing.F) {
	for _, file := range []string{"trivy-high.json", "trivy-critical.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"SchemaVersion":2,"Results":[{"Vulnerabilities":[{}]}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fs, err := ParseTrivyFindings(data)
		if err != nil {
			if !errors.Is(err, ErrBadReport) {
				t.Fatalf("error %v does not wrap ErrBadReport", err)
			}
			return
		}
		for _, f := range fs {
			if f.GetVulnerabilityId() == "" || f.GetSeverity() == customsv1.Severity_SEVERITY_UNSPECIFIED {
				t.Fatalf("finding without id or severity: %v", f)
			}
		}
	})
}

func TestSLSAPredicate(t *testing.T) {
	t.Parallel()
	ref := &customsv1.ArtifactRef{Registry: "r", Repository: "team/app", Tag: "v1"}
	if b, err := slsaPredicate(&customsv1.Provenance{Semver: "v1"}, ref); err != nil || b != nil {
		t.Fatalf("no source, sha or builder known: got %s, %v; want no predicate", b, err)
	}
	b, err := slsaPredicate(&customsv1.Provenance{SourceRepository: "https://git.example/app", GitSha: "abc123", BuildUrl: "https://ci.example/run/7"}, ref)
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		BuildDefinition struct {
			BuildType            string
			ResolvedDependencies []struct {
				URI    string
				Digest map[string]string
			}
		}
		RunDetails struct {
			Builder  struct{ ID string }
			Metadata struct{ InvocationID string }
		}
	}
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if len(p.BuildDefinition.ResolvedDependencies) != 1 || p.BuildDefinition.ResolvedDependencies[0].Digest["gitCommit"] != "abc123" {
		t.Errorf("dependencies = %+v", p.BuildDefinition.ResolvedDependencies)
	}
	if p.RunDetails.Builder.ID != unknownBuilderID || p.RunDetails.Metadata.InvocationID != "https://ci.example/run/7" {
		t.Errorf("run details = %+v", p.RunDetails)
	}
}

func TestEnsureKeyPair(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "keys")
	files, created, err := EnsureKeyPair(dir)
	if err != nil || !created {
		t.Fatalf("EnsureKeyPair = %v, %v; want created", created, err)
	}
	for path, mode := range map[string]os.FileMode{files.PrivateKey: 0o600, files.Password: 0o600, files.PublicKey: 0o644} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s mode = %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
	pub1, _ := os.ReadFile(files.PublicKey)
	if _, created, err := EnsureKeyPair(dir); err != nil || created {
		t.Fatalf("second EnsureKeyPair = %v, %v; want the existing pair kept", created, err)
	}
	pub2, _ := os.ReadFile(files.PublicKey)
	if string(pub1) != string(pub2) {
		t.Fatal("second EnsureKeyPair replaced the key")
	}

	pw, _ := os.ReadFile(files.Password)
	k, err := LoadKey(context.Background(), files.PrivateKey, []byte(strings.TrimSpace(string(pw))))
	if err != nil {
		t.Fatalf("LoadKey: %v", err)
	}
	if string(k.PublicPEM) != string(pub1) || !strings.HasPrefix(k.ID, "sha256:") || len(k.ID) != 71 {
		t.Errorf("loaded key: id %q, public key matches file: %v", k.ID, string(k.PublicPEM) == string(pub1))
	}
	_, err = LoadKey(context.Background(), files.PrivateKey, []byte("wrong"))
	if err == nil {
		t.Fatal("LoadKey with a wrong password succeeded")
	}
	if strings.Contains(err.Error(), strings.TrimSpace(string(pw))) {
		t.Fatal("error leaks the password")
	}

	if err := os.Remove(files.Password); err != nil {
		t.Fatal(err)
	}
	if _, _, err := EnsureKeyPair(dir); err == nil {
		t.Fatal("a key without its password file should be an error, not silently replaced")
	}
}

func TestIsKMSRef(t *testing.T) {
	t.Parallel()
	for ref, want := range map[string]bool{
		"awskms:///arn:aws:kms:us-east-1:1:key/x":                 true,
		"gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k": true,
		"azurekms://vault.vault.azure.net/key":                    true,
		"hashivault://transit-key":                                true,
		"/etc/customs/cosign.key":                                 false,
		"cosign.key":                                              false,
	} {
		if IsKMSRef(ref) != want {
			t.Errorf("IsKMSRef(%q) = %v, want %v", ref, !want, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	var c ServiceConfig
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "CUSTOMS_SIGNER_KEY") {
		t.Fatalf("Validate without a key = %v, want an error naming CUSTOMS_SIGNER_KEY", err)
	}
	c.Key = "k"
	if err := c.Validate(); err != nil || c.Concurrency <= 0 || c.MaxDeliver <= 0 || c.Now == nil {
		t.Fatalf("Validate = %v, defaults %+v", err, c)
	}
}

func TestUseGeneratedKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := ServiceConfig{KeyPassword: "from-env"}
	pub, err := UseGeneratedKey(&cfg, dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if pub != filepath.Join(dir, "signer", PublicKeyFile) || cfg.Key != filepath.Join(dir, "signer", PrivateKeyFile) || cfg.KeyPassword != "" {
		t.Fatalf("pub %q, cfg %+v", pub, cfg)
	}
	if _, err := os.Stat(pub); err != nil {
		t.Fatal(err)
	}
	own := ServiceConfig{Key: "awskms:///alias/customs"}
	if pub, err := UseGeneratedKey(&own, dir, slog.New(slog.DiscardHandler)); err != nil || pub != "" || own.Key != "awskms:///alias/customs" {
		t.Fatalf("a configured key was replaced: %q, %v, %+v", pub, err, own)
	}
}

func TestRegisterFlagsAreNamespaced(t *testing.T) {
	t.Parallel()
	// The one-process runtime registers every service's flags in one set;
	// a clash would panic there.
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	var c ServiceConfig
	c.RegisterFlags(fs)
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.HasPrefix(f.Name, "signer-") {
			t.Errorf("flag -%s is not prefixed with signer-", f.Name)
		}
	})
}

func TestHandleMalformedEventsAreTerminal(t *testing.T) {
	t.Parallel()
	al, err := registries.Parse("127.0.0.1:5000;plain-http")
	if err != nil {
		t.Fatal(err)
	}
	// Malformed events must be refused before the service touches a
	// registry, the object store or NATS, so none are set here.
	s := &Service{log: slog.New(slog.DiscardHandler), registry: al}
	digest := "sha256:" + strings.Repeat("a", 64)
	scanned := &customsv1.Event_Scanned{Scanned: &customsv1.ArtifactScanned{}}
	tests := []struct {
		name string
		evt  *customsv1.Event
	}{
		{"not a scanned event", &customsv1.Event{Id: "x", Artifact: &customsv1.ArtifactRef{Registry: "127.0.0.1:5000", Repository: "a/b", Digest: digest},
			Payload: &customsv1.Event_Pushed{Pushed: &customsv1.ArtifactPushed{}}}},
		{"no artifact", &customsv1.Event{Id: "x", Payload: scanned}},
		{"bad digest", &customsv1.Event{Id: "x", Artifact: &customsv1.ArtifactRef{Registry: "127.0.0.1:5000", Repository: "a/b", Digest: "sha256:zz"}, Payload: scanned}},
		{"bad repository", &customsv1.Event{Id: "x", Artifact: &customsv1.ArtifactRef{Registry: "127.0.0.1:5000", Repository: "A/../b", Digest: digest}, Payload: scanned}},
		{"no registry", &customsv1.Event{Id: "x", Artifact: &customsv1.ArtifactRef{Repository: "a/b", Digest: digest}, Payload: scanned}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := s.Handle(context.Background(), tt.evt)
			if !backbone.IsTerminal(err) {
				t.Fatalf("Handle = %v, want a terminal error", err)
			}
		})
	}
}
