package deploy

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/types"
)

// Sentinels stand in for the secrets .env supplies, so a test can follow
// where each one ends up.
const (
	sentinelToken    = "sentinel-distribution-token-0123456789"
	sentinelPassword = "sentinel-cosign-password-0123456789"
)

// loadCompose loads docker-compose.yml the way `docker compose config` does,
// with .env.example plus the sentinels as the only environment (the
// developer's shell and any local .env stay out). interpolate false keeps
// ${...} references as written.
func loadCompose(t *testing.T, interpolate bool) *types.Project {
	t.Helper()
	root := repoRoot(t)
	env := composeEnv(t, root)
	var envList []string
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnv(envList),
		cli.WithInterpolation(interpolate),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatalf("compose options: %v", err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return p
}

// composeEnv reads .env.example, insists that it ships no secret values,
// and fills them with the sentinels.
func composeEnv(t *testing.T, root string) map[string]string {
	t.Helper()
	env, err := dotenv.Read(filepath.Join(root, ".env.example"))
	if err != nil {
		t.Fatalf(".env.example: %v", err)
	}
	for _, name := range []string{"CUSTOMS_DISTRIBUTION_TOKEN", "COSIGN_PASSWORD"} {
		v, ok := env[name]
		if !ok {
			t.Fatalf(".env.example does not name %s", name)
		}
		if v != "" {
			t.Fatalf(".env.example carries a value for the secret %s; leave it empty", name)
		}
	}
	env["CUSTOMS_DISTRIBUTION_TOKEN"] = sentinelToken
	env["COSIGN_PASSWORD"] = sentinelPassword
	return env
}

func env(s types.ServiceConfig) map[string]string {
	out := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			out[k] = *v
		}
	}
	return out
}

// flagValue returns the value of --name=value (or -name=value) in args.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		a = strings.TrimLeft(a, "-")
		if k, v, ok := strings.Cut(a, "="); ok && k == name {
			return v, true
		}
	}
	return "", false
}

func hasFlag(args []string, names ...string) bool {
	for _, a := range args {
		if slices.Contains(names, strings.TrimLeft(a, "-")) {
			return true
		}
	}
	return false
}

// natsNodes are the services running the NATS server image, by name.
func natsNodes(p *types.Project) []string {
	var nodes []string
	for name, s := range p.Services {
		if strings.HasPrefix(s.Image, "nats:") {
			nodes = append(nodes, name)
		}
	}
	sort.Strings(nodes)
	return nodes
}

// checkCompose returns every way the project falls short of the deployment
// the project promises: a three-node JetStream cluster, a registry that
// notifies ingest, each Customs service in its own hardened container on
// that cluster with three replicas per stream, two scanners and a trace
// viewer.
func checkCompose(p *types.Project, root string) []string {
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	// NATS: three nodes, one cluster, full routes, own storage each.
	nodes := natsNodes(p)
	if len(nodes) != 3 {
		fail("want 3 NATS nodes, found %d: %v", len(nodes), nodes)
	}
	var wantRoutes []string
	for _, n := range nodes {
		wantRoutes = append(wantRoutes, "nats://"+n+":6222")
	}
	clusterNames, serverNames, stores := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, n := range nodes {
		s := p.Services[n]
		args := []string(s.Command)
		if !hasFlag(args, "js", "jetstream") {
			fail("%s: JetStream is not enabled (--jetstream)", n)
		}
		cn, _ := flagValue(args, "cluster_name")
		clusterNames[cn] = true
		sn, ok := flagValue(args, "name")
		if !ok || serverNames[sn] {
			fail("%s: needs a unique --name (JetStream clustering requires one), got %q", n, sn)
		}
		serverNames[sn] = true
		if c, _ := flagValue(args, "cluster"); c != "nats://0.0.0.0:6222" {
			fail("%s: --cluster=%q, want nats://0.0.0.0:6222", n, c)
		}
		routes, _ := flagValue(args, "routes")
		got := strings.Split(routes, ",")
		sort.Strings(got)
		if !slices.Equal(got, wantRoutes) {
			fail("%s: --routes=%q, want every node: %v", n, routes, wantRoutes)
		}
		store, _ := flagValue(args, "store_dir")
		if store == "" {
			fail("%s: no --store_dir", n)
		}
		var persisted bool
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeVolume && v.Target == store && v.Source != "" {
				persisted = true
				if stores[v.Source] {
					fail("%s: volume %s is shared with another node", n, v.Source)
				}
				stores[v.Source] = true
			}
		}
		if !persisted {
			fail("%s: the JetStream store %q is not on a named volume", n, store)
		}
		if s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 {
			fail("%s: no healthcheck for the services to wait on", n)
		}
	}
	if len(clusterNames) != 1 || clusterNames[""] {
		fail("NATS nodes must share one --cluster_name, got %v", slices.Collect(maps.Keys(clusterNames)))
	}

	// The registry and its notifications.
	reg, ok := p.Services["registry"]
	switch {
	case !ok:
		fail("no registry service")
	case !strings.HasPrefix(reg.Image, "registry:") && !strings.HasPrefix(reg.Image, "distribution/distribution:"):
		fail("registry: image %q is not CNCF Distribution", reg.Image)
	default:
		var mounted bool
		for _, v := range reg.Volumes {
			if v.Type == types.VolumeTypeBind && v.Source == filepath.Join(root, "deploy/compose/registry/config.yml") && v.Target == "/etc/distribution/config.yml" {
				mounted = true
			}
		}
		if !mounted {
			fail("registry: deploy/compose/registry/config.yml is not mounted at /etc/distribution/config.yml")
		}
		if env(reg)[registryHeaderEnv] == "" {
			fail("registry: %s is not set, so its webhooks carry no valid token", registryHeaderEnv)
		}
	}

	// Each Customs service: own container built from the one Dockerfile,
	// on the cluster, hardened, tracing to the viewer.
	wantNATS := strings.Join(func() []string {
		var urls []string
		for _, n := range nodes {
			urls = append(urls, "nats://"+n+":4222")
		}
		return urls
	}(), ",")
	for _, name := range customsServices {
		s, ok := p.Services[name]
		if !ok {
			fail("no %s service", name)
			continue
		}
		if s.Build == nil || s.Build.Context != root {
			fail("%s: not built from the repository root", name)
		} else if arg := s.Build.Args["SERVICE"]; arg == nil || *arg != name {
			fail("%s: build arg SERVICE is not %q", name, name)
		}
		if tag := s.Image[strings.LastIndex(s.Image, ":")+1:]; !strings.Contains(s.Image, ":") || tag == "latest" {
			fail("%s: image %q needs a tag other than latest", name, s.Image)
		}
		e := env(s)
		urls := strings.Split(e["CUSTOMS_NATS_URL"], ",")
		sort.Strings(urls)
		if strings.Join(urls, ",") != wantNATS {
			fail("%s: CUSTOMS_NATS_URL=%q, want all three nodes %q", name, e["CUSTOMS_NATS_URL"], wantNATS)
		}
		if e["CUSTOMS_STREAM_REPLICAS"] != fmt.Sprint(len(nodes)) || e["CUSTOMS_STREAM_REPLICAS"] != "3" {
			fail("%s: CUSTOMS_STREAM_REPLICAS=%q, want 3 (one per node)", name, e["CUSTOMS_STREAM_REPLICAS"])
		}
		if e["OTEL_TRACES_EXPORTER"] != "otlp" || e["OTEL_EXPORTER_OTLP_PROTOCOL"] != "grpc" {
			fail("%s: traces are not exported over OTLP/gRPC", name)
		}
		if ep := e["OTEL_EXPORTER_OTLP_ENDPOINT"]; ep != "http://jaeger:4317" {
			fail("%s: OTEL_EXPORTER_OTLP_ENDPOINT=%q, want http://jaeger:4317", name, ep)
		}
		for k, v := range e {
			if strings.HasSuffix(k, "_LISTEN") && !strings.HasPrefix(v, "0.0.0.0:") {
				fail("%s: %s=%q is unreachable from other containers; listen on 0.0.0.0", name, k, v)
			}
		}
		if !s.ReadOnly {
			fail("%s: root file system is writable (read_only: true)", name)
		}
		if !slices.Contains(s.CapDrop, "ALL") {
			fail("%s: capabilities are not dropped (cap_drop: [ALL])", name)
		}
		if !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			fail("%s: no-new-privileges is not set", name)
		}
		for _, n := range nodes {
			if d, ok := s.DependsOn[n]; !ok || d.Condition != types.ServiceConditionHealthy {
				fail("%s: does not wait for %s to be healthy", name, n)
			}
		}
	}
	if s, ok := p.Services["scanner"]; ok {
		if s.Deploy == nil || s.Deploy.Replicas == nil || *s.Deploy.Replicas != 2 {
			fail("scanner: want deploy.replicas: 2")
		}
	}
	if s, ok := p.Services["ingest"]; ok {
		if got := env(s)["CUSTOMS_DISTRIBUTION_TOKEN_FILE"]; got != "/run/secrets/distribution_token" || !mountsSecret(s, "distribution_token") {
			fail("ingest: must read its token from the distribution_token secret, CUSTOMS_DISTRIBUTION_TOKEN_FILE=%q", got)
		}
	}

	// The trace viewer.
	var viewer bool
	for name, s := range p.Services {
		if strings.Contains(s.Image, "jaeger") {
			viewer = name == "jaeger" && slices.Contains([]string(s.Expose), "4317")
		}
	}
	if !viewer {
		fail("no jaeger service accepting OTLP on 4317")
	}

	problems = append(problems, checkComposeSecrets(p, root)...)
	sort.Strings(problems)
	return problems
}

// registryHeaderEnv overrides the headers of notification endpoint 0 in
// the registry's config.yml.
const registryHeaderEnv = "REGISTRY_NOTIFICATIONS_ENDPOINTS_0_HEADERS"

func mountsSecret(s types.ServiceConfig, name string) bool {
	for _, sec := range s.Secrets {
		if sec.Source == name && (sec.Target == "" || sec.Target == name || sec.Target == "/run/secrets/"+name) {
			return true
		}
	}
	return false
}

// checkComposeSecrets: secrets reach the services as compose secrets (from
// .env or from files kept out of git), and a variable that names a secret
// file points at one the service mounts.
func checkComposeSecrets(p *types.Project, root string) []string {
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	secretsDir := filepath.Join(root, "deploy/compose/secrets") + string(filepath.Separator)
	for name, sec := range p.Secrets {
		switch {
		case sec.Environment != "":
		case sec.File != "" && strings.HasPrefix(sec.File, secretsDir):
		default:
			fail("secret %s: must come from .env (environment:) or deploy/compose/secrets/ (kept out of git), not %q", name, sec.File)
		}
	}
	for sname, s := range p.Services {
		for _, ref := range s.Secrets {
			if _, ok := p.Secrets[ref.Source]; !ok {
				fail("%s: secret %s is not defined", sname, ref.Source)
			}
		}
		for k, v := range env(s) {
			if !sensitiveEnv.MatchString(k) {
				continue
			}
			secret, isPath := strings.CutPrefix(v, "/run/secrets/")
			if !isPath || !mountsSecret(s, secret) {
				fail("%s: %s carries a value (%q) instead of the path of a mounted secret", sname, k, v)
			}
		}
	}
	return problems
}

func TestComposeFile(t *testing.T) {
	t.Parallel()
	p := loadCompose(t, true)
	if problems := checkCompose(p, repoRoot(t)); len(problems) > 0 {
		t.Errorf("docker-compose.yml:%s", joinErrs(problems))
	}
}

// The registry must send the very token ingest checks: both come from the
// one .env variable, the registry through its header override and ingest
// through the distribution_token secret.
func TestComposeRegistryTokenMatchesIngest(t *testing.T) {
	t.Parallel()
	p := loadCompose(t, true)
	header := env(p.Services["registry"])[registryHeaderEnv]
	if want := `{"Authorization": ["Bearer ` + sentinelToken + `"]}`; header != want {
		t.Errorf("%s = %s, want %s", registryHeaderEnv, header, want)
	}
	sec, ok := p.Secrets["distribution_token"]
	if !ok || sec.Environment != "CUSTOMS_DISTRIBUTION_TOKEN" {
		t.Errorf("secret distribution_token must come from CUSTOMS_DISTRIBUTION_TOKEN, got %+v", sec)
	}
	if pw, ok := p.Secrets["cosign_password"]; !ok || pw.Environment != "COSIGN_PASSWORD" {
		t.Errorf("secret cosign_password must come from COSIGN_PASSWORD, got %+v", pw)
	}
}

// As written (before interpolation), no secret is in the file: every
// bearer token is a ${...} reference.
func TestComposeInlinesNoSecret(t *testing.T) {
	t.Parallel()
	p := loadCompose(t, false)
	for name, s := range p.Services {
		for k, v := range env(s) {
			if strings.Contains(v, sentinelToken) || strings.Contains(v, sentinelPassword) {
				t.Errorf("%s: %s was interpolated though interpolation is off", name, k)
			}
			if _, after, ok := strings.Cut(v, "Bearer "); ok && !strings.HasPrefix(after, "${") {
				t.Errorf("%s: %s inlines a bearer token; take it from .env with ${...}", name, k)
			}
		}
	}
	root := repoRoot(t)
	if problems := checkComposeSecrets(p, root); len(problems) > 0 {
		t.Errorf("docker-compose.yml secrets:%s", joinErrs(problems))
	}

	// Where the secrets live locally is kept out of git.
	for file, pattern := range map[string]string{".gitignore": "/.env", "deploy/compose/secrets/.gitignore": "*"} {
		b, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(strings.Fields(string(b)), pattern) {
			t.Errorf("%s does not ignore %s", file, pattern)
		}
	}
}

// The checks must catch a broken file: each case breaks one promise on a
// freshly loaded project and expects its problem to be reported.
func TestCheckComposeCatches(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	tests := []struct {
		name   string
		mutate func(p *types.Project)
		want   string
	}{
		{
			name:   "missing route",
			mutate: func(p *types.Project) { setCommand(p, "nats-2", "routes", "nats://nats-1:6222,nats://nats-2:6222") },
			want:   "nats-2: --routes=",
		},
		{
			name:   "two nodes",
			mutate: func(p *types.Project) { delete(p.Services, "nats-3") },
			want:   "want 3 NATS nodes, found 2",
		},
		{
			name: "one scanner",
			mutate: func(p *types.Project) {
				one := 1
				s := p.Services["scanner"]
				s.Deploy.Replicas = &one
				p.Services["scanner"] = s
			},
			want: "scanner: want deploy.replicas: 2",
		},
		{
			name:   "single replica streams",
			mutate: func(p *types.Project) { setEnv(p, "query", "CUSTOMS_STREAM_REPLICAS", "1") },
			want:   `query: CUSTOMS_STREAM_REPLICAS="1"`,
		},
		{
			name:   "one NATS url",
			mutate: func(p *types.Project) { setEnv(p, "signer", "CUSTOMS_NATS_URL", "nats://nats-1:4222") },
			want:   "signer: CUSTOMS_NATS_URL=",
		},
		{
			name:   "inlined token",
			mutate: func(p *types.Project) { setEnv(p, "ingest", "CUSTOMS_DISTRIBUTION_TOKEN", "hunter2") },
			want:   "ingest: CUSTOMS_DISTRIBUTION_TOKEN carries a value",
		},
		{
			name:   "loopback listener",
			mutate: func(p *types.Project) { setEnv(p, "ingest", "CUSTOMS_INGEST_LISTEN", "127.0.0.1:8080") },
			want:   "ingest: CUSTOMS_INGEST_LISTEN=",
		},
		{
			name:   "writable root",
			mutate: func(p *types.Project) { s := p.Services["scanner"]; s.ReadOnly = false; p.Services["scanner"] = s },
			want:   "scanner: root file system is writable",
		},
		{
			name:   "no trace viewer",
			mutate: func(p *types.Project) { delete(p.Services, "jaeger") },
			want:   "no jaeger service",
		},
		{
			name: "secret file in the repository",
			mutate: func(p *types.Project) {
				p.Secrets["cosign_key"] = types.SecretConfig{File: filepath.Join(root, "cosign.key")}
			},
			want: "secret cosign_key: must come from",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := loadCompose(t, true)
			if problems := checkCompose(p, root); len(problems) != 0 {
				t.Fatalf("the unbroken file already has problems:%s", joinErrs(problems))
			}
			tc.mutate(p)
			problems := checkCompose(p, root)
			if !slices.ContainsFunc(problems, func(s string) bool { return strings.Contains(s, tc.want) }) {
				t.Errorf("want a problem containing %q, got:%s", tc.want, joinErrs(problems))
			}
		})
	}
}

func setEnv(p *types.Project, service, key, value string) {
	s := p.Services[service]
	s.Environment = maps.Clone(s.Environment)
	s.Environment[key] = &value
	p.Services[service] = s
}

func setCommand(p *types.Project, service, flag, value string) {
	s := p.Services[service]
	args := slices.Clone([]string(s.Command))
	for i, a := range args {
		if k, _, ok := strings.Cut(strings.TrimLeft(a, "-"), "="); ok && k == flag {
			args[i] = "--" + flag + "=" + value
		}
	}
	s.Command = args
	p.Services[service] = s
}
