package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/customs-dev/customs/services/promotion/rules"
	"github.com/customs-dev/customs/services/signer/policy"
)

// The signing policies and promotion rules the deployments ship are
// accepted by the parsers the signer and promotion services run: a file they
// reject would leave the service on its default or refusing to start.
func TestShippedPoliciesAndRulesParse(t *testing.T) {
	t.Parallel()
	checkPolicy := func(where string, b []byte) {
		if _, err := policy.Parse(b); err != nil {
			t.Errorf("%s: the signer rejects the policy: %v", where, err)
		}
	}
	checkRules := func(where string, b []byte) {
		if _, err := rules.Parse(b); err != nil {
			t.Errorf("%s: the promotion service rejects the rules: %v", where, err)
		}
	}

	// docker-compose.yml: follow the variables through the bind mounts to
	// the files in the repository.
	p := loadCompose(t, true)
	for service, variable := range map[string]string{"signer": "CUSTOMS_SIGNER_POLICY", "promotion": "CUSTOMS_PROMOTION_RULES"} {
		s := p.Services[service]
		path := env(s)[variable]
		var host string
		for _, v := range s.Volumes {
			if rel, err := filepath.Rel(v.Target, path); v.Type == "bind" && err == nil && !strings.HasPrefix(rel, "..") {
				host = filepath.Join(v.Source, rel)
			}
		}
		if host == "" {
			t.Errorf("docker-compose.yml: %s=%s is on no bind mount", variable, path)
			continue
		}
		b, err := os.ReadFile(host)
		if err != nil {
			t.Errorf("docker-compose.yml: %s: %v", variable, err)
			continue
		}
		if service == "signer" {
			checkPolicy("docker-compose.yml "+host, b)
		} else {
			checkRules("docker-compose.yml "+host, b)
		}
	}

	// Every overlay's ConfigMaps.
	for _, overlay := range overlays(t) {
		b := index(overlay, buildOverlay(t, overlay))
		var sawPolicy, sawRules bool
		for name, cm := range b.configMaps {
			switch {
			case strings.HasPrefix(name, "customs-signer-policy"):
				sawPolicy = true
				checkPolicy(overlay+" ConfigMap "+name, []byte(cm.Data["policy.yaml"]))
			case strings.HasPrefix(name, "customs-promotion-rules"):
				sawRules = true
				checkRules(overlay+" ConfigMap "+name, []byte(cm.Data["rules.yaml"]))
			}
		}
		if !sawPolicy || !sawRules {
			t.Errorf("%s: want the signer policy and promotion rules ConfigMaps (policy %v, rules %v)", overlay, sawPolicy, sawRules)
		}
	}
}

// The parsers are strict enough for this test to fail.
func TestPolicyAndRulesParsersReject(t *testing.T) {
	t.Parallel()
	if _, err := policy.Parse([]byte("severity: DEADLY\n")); err == nil {
		t.Error("the signer policy parser accepts an unknown severity")
	}
	if _, err := rules.Parse([]byte("rules:\n  - id: x\n    source: \"*/team/*\"\n    targets:\n      - environment: staging\n        max_severity: deadly\n")); err == nil {
		t.Error("the promotion rules parser accepts a rule with no repository and an unknown severity")
	}
}
