package promotion

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"google.golang.org/protobuf/proto"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/registries"
	"github.com/customs-dev/customs/services/promotion/rules"
)

const testDigest = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func TestParseCommand(t *testing.T) {
	t.Parallel()
	promote := func(mut func(*customsv1.PromotionCommand)) []byte {
		c := &customsv1.PromotionCommand{Kind: customsv1.PromotionCommandKind_PROMOTION_COMMAND_KIND_PROMOTE, Digest: testDigest, Environment: "prod", Actor: "alice", Reason: "release"}
		mut(c)
		b, err := proto.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name    string
		data    []byte
		inError string
	}{
		{name: "promote", data: promote(func(*customsv1.PromotionCommand) {})},
		{name: "rollback without digest", data: promote(func(c *customsv1.PromotionCommand) {
			c.Kind, c.Digest, c.Application = customsv1.PromotionCommandKind_PROMOTION_COMMAND_KIND_ROLLBACK, "", "r/prod/app"
		})},
		{name: "garbage", data: []byte{0xff, 0xff, 0xff}, inError: "undecodable"},
		{name: "no reason", data: promote(func(c *customsv1.PromotionCommand) { c.Reason = "" }), inError: "required"},
		{name: "auto actor", data: promote(func(c *customsv1.PromotionCommand) { c.Actor = ActorAuto }), inError: "reserved"},
		{name: "bad digest", data: promote(func(c *customsv1.PromotionCommand) { c.Digest = "sha256:1" }), inError: "digest"},
		{name: "no kind", data: promote(func(c *customsv1.PromotionCommand) { c.Kind = 0 }), inError: "unknown command kind"},
		{name: "rollback without application", data: promote(func(c *customsv1.PromotionCommand) {
			c.Kind = customsv1.PromotionCommandKind_PROMOTION_COMMAND_KIND_ROLLBACK
		}), inError: "application"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cmd, bad := parseCommand(tc.data)
			if tc.inError == "" {
				if bad != nil || cmd == nil {
					t.Fatalf("parseCommand refused: %v", bad)
				}
				return
			}
			if bad == nil || bad.GetStatus() != customsv1.PromotionCommandStatus_PROMOTION_COMMAND_STATUS_INVALID || !strings.Contains(bad.GetReason(), tc.inError) {
				t.Errorf("parseCommand = %v, want INVALID mentioning %q", bad, tc.inError)
			}
		})
	}
}

func FuzzParseCommand(f *testing.F) {
	b, _ := proto.Marshal(&customsv1.PromotionCommand{Kind: customsv1.PromotionCommandKind_PROMOTION_COMMAND_KIND_PROMOTE, Digest: testDigest, Environment: "prod", Actor: "a", Reason: "r"})
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd, bad := parseCommand(data)
		if (cmd == nil) == (bad == nil) {
			t.Fatalf("parseCommand(%x) = %v, %v: want exactly one", data, cmd, bad)
		}
		if bad != nil && bad.GetReason() == "" {
			t.Fatal("refusal without a reason")
		}
	})
}

func TestLoadPublicKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cosign.pub"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.pub"), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := LoadPublicKeys(filepath.Join(dir, "cosign.pub") + ", release=" + filepath.Join(dir, "cosign.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].Name != "cosign" || keys[1].Name != "release" || !strings.HasPrefix(keys[0].ID, "sha256:") || keys[0].ID != keys[1].ID {
		t.Errorf("keys = %+v", keys)
	}
	for _, bad := range []string{"", "missing.pub", filepath.Join(dir, "bad.pub"), "a=" + filepath.Join(dir, "cosign.pub") + ",a=" + filepath.Join(dir, "cosign.pub")} {
		if _, err := LoadPublicKeys(bad); err == nil {
			t.Errorf("LoadPublicKeys(%q) succeeded", bad)
		}
	}
}

func TestPredicateType(t *testing.T) {
	t.Parallel()
	env := `{"payloadType":"application/vnd.in-toto+json","payload":"eyJwcmVkaWNhdGVUeXBlIjoiaHR0cHM6Ly9jeWNsb25lZHgub3JnL2JvbSJ9"}`
	if got := predicateType(func() ([]byte, error) { return []byte(env), nil }); got != "https://cyclonedx.org/bom" {
		t.Errorf("predicateType = %q", got)
	}
	for _, bad := range []string{"", "{}", `{"payload":"!!"}`, `{"payload":"bm90IGpzb24="}`} {
		if got := predicateType(func() ([]byte, error) { return []byte(bad), nil }); got != "" {
			t.Errorf("predicateType(%q) = %q", bad, got)
		}
	}
}

func TestCheckRules(t *testing.T) {
	t.Parallel()
	f, err := rules.Parse([]byte(`
rules:
  - id: r
    source: "*/team/*"
    targets:
      - {environment: staging, repository: "{registry}/staging/{repository}", keys: [release]}
      - {environment: prod, repository: "prod.example.com/app", keys: [ops]}
`))
	if err != nil {
		t.Fatal(err)
	}
	allow, err := registries.Parse("reg.example.com")
	if err != nil {
		t.Fatal(err)
	}
	got := checkRules(f, []*PublicKey{{Name: "release", ID: "sha256:x"}}, allow)
	if len(got) != 2 || !strings.Contains(got[0], `key "ops"`) || !strings.Contains(got[1], "prod.example.com") {
		t.Errorf("checkRules = %q", got)
	}
}

func TestReasonCode(t *testing.T) {
	t.Parallel()
	for reason, want := range map[string]string{
		`"latest" is a floating tag and is never promoted`:                        "floating_tag",
		"no signature in the registry verifies with a configured public key":      "unsigned",
		"not signed by any key allowed for prod (want one of release)":            "untrusted_key",
		"must be promoted to staging before prod":                                 "environment_order",
		"2 critical findings exceed the maximum severity high":                    "severity",
		`tag "v1" moved from another digest, and tag moves are blocking for prod`: "tag_move",
		"missing verified attestation https://cyclonedx.org/bom":                  "missing_attestation",
		"the artifact has no tag to promote":                                      "tag_policy",
		"no scan result known, and prod allows at most high findings":             "not_scanned",
		"something new": "other",
	} {
		if got := reasonCode(reason); got != want {
			t.Errorf("reasonCode(%q) = %q, want %q", reason, got, want)
		}
	}
}

func TestHigherCounts(t *testing.T) {
	t.Parallel()
	attested := map[string]int{"critical": 1, "high": 0, "low": 3}
	event := map[string]int{"critical": 0, "high": 2}
	got := higherCounts(attested, event)
	want := map[string]int{"critical": 1, "high": 2, "low": 3}
	if len(got) != len(want) || got["critical"] != 1 || got["high"] != 2 || got["low"] != 3 {
		t.Errorf("higherCounts = %v, want %v", got, want)
	}
	if got := higherCounts(attested, nil); got["critical"] != 1 || got["low"] != 3 {
		t.Errorf("without event counts = %v", got)
	}
}
