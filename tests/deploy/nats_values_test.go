package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

// natsChartKeys are the top-level values of the official NATS chart (2.x);
// anything else is a typo the chart would silently ignore.
var natsChartKeys = []string{
	"global", "nameOverride", "fullnameOverride", "namespaceOverride", "tlsCA", "config", "container", "reloader",
	"promExporter", "service", "statefulSet", "podTemplate", "headlessService", "configMap", "podDisruptionBudget",
	"serviceAccount", "natsBox", "extraResources",
}

func loadNATSValues(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy/k8s/nats/values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.UnmarshalStrict(b, &v); err != nil {
		t.Fatalf("deploy/k8s/nats/values.yaml: %v", err)
	}
	return v
}

// lookup walks nested maps: lookup(v, "config", "cluster", "enabled").
func lookup(v map[string]any, path ...string) any {
	var cur any = v
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

// checkNATSValues: the chart values give a JetStream cluster that can hold
// streamReplicas copies of every stream on disk, with the monitoring port
// KEDA reads, running the NATS minor version compose runs.
func checkNATSValues(v map[string]any, streamReplicas int, composeImage string) []string {
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	for k := range v {
		if !slices.Contains(natsChartKeys, k) {
			fail("unknown top-level value %q", k)
		}
	}
	if lookup(v, "config", "cluster", "enabled") != true {
		fail("config.cluster.enabled is not true")
	}
	replicas, ok := number(lookup(v, "config", "cluster", "replicas"))
	if !ok || int(replicas) < streamReplicas || int(replicas) < 3 {
		fail("config.cluster.replicas = %v: need at least 3 and at least CUSTOMS_STREAM_REPLICAS (%d)", lookup(v, "config", "cluster", "replicas"), streamReplicas)
	}
	if lookup(v, "config", "jetstream", "enabled") != true {
		fail("config.jetstream.enabled is not true")
	}
	if lookup(v, "config", "jetstream", "fileStore", "enabled") != true || lookup(v, "config", "jetstream", "fileStore", "pvc", "enabled") != true {
		fail("JetStream must store on a PVC (config.jetstream.fileStore.enabled and .pvc.enabled)")
	}
	size, _ := lookup(v, "config", "jetstream", "fileStore", "pvc", "size").(string)
	if q, err := resource.ParseQuantity(size); err != nil || q.Cmp(resource.MustParse("1Gi")) < 0 {
		fail("config.jetstream.fileStore.pvc.size %q: want a quantity of at least 1Gi", size)
	}
	if lookup(v, "config", "jetstream", "memoryStore", "enabled") == true {
		fail("config.jetstream.memoryStore.enabled: the streams must survive restarts")
	}
	if port, _ := number(lookup(v, "config", "monitor", "port")); lookup(v, "config", "monitor", "enabled") != true || port != 8222 {
		fail("config.monitor must be enabled on 8222 (probes and KEDA's scaler)")
	}
	tag, _ := lookup(v, "container", "image", "tag").(string)
	if tag == "" || strings.HasPrefix(tag, "latest") {
		fail("container.image.tag %q: pin a NATS version", tag)
	} else if want := minorOf(strings.TrimPrefix(composeImage, "nats:")); minorOf(tag) != want {
		fail("container.image.tag %q runs another NATS minor version than compose's %s", tag, composeImage)
	}
	return problems
}

// minorOf turns "2.14.2-alpine" or "2.14-alpine" into "2.14".
func minorOf(tag string) string {
	parts := strings.SplitN(strings.SplitN(tag, "-", 2)[0], ".", 3)
	if len(parts) < 2 {
		return tag
	}
	return parts[0] + "." + parts[1]
}

func composeNATSImage(t *testing.T) string {
	t.Helper()
	p := loadCompose(t, true)
	nodes := natsNodes(p)
	if len(nodes) == 0 {
		t.Fatal("no NATS node in docker-compose.yml")
	}
	return p.Services[nodes[0]].Image
}

// streamReplicas is CUSTOMS_STREAM_REPLICAS as the prod overlay sets it.
func streamReplicas(t *testing.T) int {
	t.Helper()
	b := index("prod", buildOverlay(t, "prod"))
	for name, cm := range b.configMaps {
		if strings.HasPrefix(name, "customs-common") {
			n, err := strconv.Atoi(cm.Data["CUSTOMS_STREAM_REPLICAS"])
			if err != nil {
				t.Fatalf("CUSTOMS_STREAM_REPLICAS: %v", err)
			}
			return n
		}
	}
	t.Fatal("no customs-common ConfigMap in prod")
	return 0
}

func TestNATSChartValues(t *testing.T) {
	t.Parallel()
	if problems := checkNATSValues(loadNATSValues(t), streamReplicas(t), composeNATSImage(t)); len(problems) > 0 {
		sort.Strings(problems)
		t.Errorf("deploy/k8s/nats/values.yaml:%s", joinErrs(problems))
	}
}

func TestCheckNATSValuesCatches(t *testing.T) {
	t.Parallel()
	replicas, image := streamReplicas(t), composeNATSImage(t)
	set := func(v map[string]any, value any, path ...string) {
		m := v
		for _, p := range path[:len(path)-1] {
			m = m[p].(map[string]any)
		}
		m[path[len(path)-1]] = value
	}
	tests := []struct {
		name   string
		mutate func(v map[string]any)
		want   string
	}{
		{"no cluster", func(v map[string]any) { set(v, false, "config", "cluster", "enabled") }, "config.cluster.enabled"},
		{"two nodes", func(v map[string]any) { set(v, float64(2), "config", "cluster", "replicas") }, "config.cluster.replicas = 2"},
		{"no JetStream", func(v map[string]any) { set(v, false, "config", "jetstream", "enabled") }, "config.jetstream.enabled"},
		{"memory only", func(v map[string]any) { set(v, false, "config", "jetstream", "fileStore", "pvc", "enabled") }, "must store on a PVC"},
		{"tiny volume", func(v map[string]any) { set(v, "10Mi", "config", "jetstream", "fileStore", "pvc", "size") }, "at least 1Gi"},
		{"typo", func(v map[string]any) { v["confg"] = map[string]any{} }, `unknown top-level value "confg"`},
		{"other NATS", func(v map[string]any) { set(v, "2.9.1-alpine", "container", "image", "tag") }, "another NATS minor version"},
		{"no monitoring", func(v map[string]any) { set(v, false, "config", "monitor", "enabled") }, "config.monitor"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := loadNATSValues(t)
			if problems := checkNATSValues(v, replicas, image); len(problems) != 0 {
				t.Fatalf("the unbroken values already have problems:%s", joinErrs(problems))
			}
			tc.mutate(v)
			problems := checkNATSValues(v, replicas, image)
			if !slices.ContainsFunc(problems, func(s string) bool { return strings.Contains(s, tc.want) }) {
				t.Errorf("want a problem containing %q, got:%s", tc.want, joinErrs(problems))
			}
		})
	}
}
