package deploy

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

var customsEnvName = regexp.MustCompile(`"(CUSTOMS_[A-Z0-9_]+)"`)

// knownEnv is every CUSTOMS_* variable a service's code reads: the quoted
// names in its own module and in pkg/ (shared flags such as the NATS ones).
// ok is false while the service's code is not in the tree.
func knownEnv(t *testing.T, root, service string) (known map[string]bool, ok bool) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(root, "services", service, "main.go")); err != nil {
		return nil, false
	}
	known = map[string]bool{}
	for _, dir := range []string{filepath.Join(root, "services", service), filepath.Join(root, "pkg")} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range customsEnvName.FindAllSubmatch(b, -1) {
				known[string(m[1])] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return known, true
}

// pendingEnv are variables the deployments may already set for a service
// whose code does not read them yet, by service. The test fails once a
// service reads one, so each entry leaves with the change that adds it.
var pendingEnv = map[string][]string{}

// A variable set for a service that its code never reads is a typo or a
// renamed flag: the service would silently run on its default.
func TestEnvVarsAreReadByTheServices(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	known := map[string]map[string]bool{}
	for _, s := range customsServices {
		k, ok := knownEnv(t, root, s)
		if !ok {
			t.Logf("services/%s is not in this tree yet: its variables are not checked", s)
			continue
		}
		known[s] = k
	}
	check := func(where, service string, names []string) {
		k, ok := known[service]
		if !ok {
			return
		}
		for _, n := range names {
			if slices.Contains(pendingEnv[service], n) {
				continue
			}
			if strings.HasPrefix(n, "CUSTOMS_") && !k[n] {
				t.Errorf("%s: %s sets %s, which services/%s does not read", where, service, n, service)
			}
		}
	}

	for service, names := range pendingEnv {
		for _, n := range names {
			if known[service][n] {
				t.Errorf("services/%s reads %s now: remove it from pendingEnv", service, n)
			}
		}
	}

	p := loadCompose(t, true)
	for _, s := range customsServices {
		if svc, ok := p.Services[s]; ok {
			check("docker-compose.yml", s, sortedKeys(env(svc)))
		}
	}

	for _, overlay := range overlays(t) {
		b := index(overlay, buildOverlay(t, overlay))
		for _, d := range b.deployments {
			for _, c := range d.Spec.Template.Spec.Containers {
				var names []string
				for _, e := range c.Env {
					names = append(names, e.Name)
				}
				check(overlay, d.Name, names)
			}
		}
		// The shared ConfigMap goes to every service: each key must be
		// read by at least one (once all of them are in the tree).
		for name, cm := range b.configMaps {
			if !strings.HasPrefix(name, "customs-common") || len(known) < len(customsServices) {
				continue
			}
			for _, key := range sortedKeys(cm.Data) {
				if !strings.HasPrefix(key, "CUSTOMS_") {
					continue
				}
				var read bool
				for _, k := range known {
					read = read || k[key]
				}
				if !read {
					t.Errorf("%s: ConfigMap %s sets %s, which no service reads", overlay, name, key)
				}
			}
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
