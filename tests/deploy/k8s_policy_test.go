package deploy

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// builtOverlay indexes one overlay's objects for the policy checks.
type builtOverlay struct {
	name        string
	objects     []object
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	pdbs        []*policyv1.PodDisruptionBudget
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
	netpols     []*networkingv1.NetworkPolicy
	namespaces  []*corev1.Namespace
	scaled      []object // KEDA ScaledObjects
}

func index(name string, objs []object) *builtOverlay {
	b := &builtOverlay{name: name, objects: objs, configMaps: map[string]*corev1.ConfigMap{}}
	for _, o := range objs {
		switch v := o.Typed.(type) {
		case *appsv1.Deployment:
			b.deployments = append(b.deployments, v)
		case *corev1.Service:
			b.services = append(b.services, v)
		case *corev1.ConfigMap:
			b.configMaps[v.Name] = v
		case *policyv1.PodDisruptionBudget:
			b.pdbs = append(b.pdbs, v)
		case *autoscalingv2.HorizontalPodAutoscaler:
			b.hpas = append(b.hpas, v)
		case *networkingv1.NetworkPolicy:
			b.netpols = append(b.netpols, v)
		case *corev1.Namespace:
			b.namespaces = append(b.namespaces, v)
		case nil:
			if o.Kind == "ScaledObject" {
				b.scaled = append(b.scaled, o)
			}
		}
	}
	return b
}

// isProd marks the overlays held to the release rules (pinned images, at
// least two scanners).
func isProd(overlay string) bool { return strings.HasPrefix(overlay, "prod") }

// semverTag is a release tag, v optional.
var semverTag = regexp.MustCompile(`^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)

// checkOverlay returns every policy a built overlay breaks.
func checkOverlay(b *builtOverlay, docs string) []string {
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	if len(b.namespaces) != 1 {
		fail("want exactly one Namespace, found %d", len(b.namespaces))
	}
	for _, o := range b.objects {
		switch o.Kind {
		case "Namespace":
		case "Secret":
			fail("%s: Secrets are created out of band (docs/deploy.md), never kept in the manifests", o.id())
		default:
			if len(b.namespaces) == 1 && o.Namespace != b.namespaces[0].Name {
				fail("%s: namespace %q, want the overlay's %q", o.id(), o.Namespace, b.namespaces[0].Name)
			}
		}
	}
	for _, cm := range b.configMaps {
		for k := range cm.Data {
			if sensitiveEnv.MatchString(k) {
				fail("ConfigMap/%s: key %s looks like a secret; use a Secret", cm.Name, k)
			}
		}
	}

	names := map[string]*appsv1.Deployment{}
	for _, d := range b.deployments {
		names[d.Name] = d
		problems = append(problems, checkDeployment(b, d)...)
	}
	for _, want := range customsServices {
		if names[want] == nil {
			fail("no Deployment %s", want)
		}
	}

	// Every Deployment has a PodDisruptionBudget.
	for _, d := range b.deployments {
		var covered bool
		for _, pdb := range b.pdbs {
			covered = covered || selects(pdb.Spec.Selector, d.Spec.Template.Labels)
		}
		if !covered {
			fail("Deployment/%s: no PodDisruptionBudget selects its pods", d.Name)
		}
	}

	// Services reach pods on ports the pods declare.
	for _, s := range b.services {
		var pods []*appsv1.Deployment
		for _, d := range b.deployments {
			if len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				pods = append(pods, d)
			}
		}
		if len(pods) == 0 {
			fail("Service/%s: selects no Deployment's pods", s.Name)
			continue
		}
		for _, p := range s.Spec.Ports {
			for _, d := range pods {
				if _, ok := containerPort(d, p.TargetPort); !ok {
					fail("Service/%s: port %s targets %s, which Deployment/%s does not declare", s.Name, p.Name, p.TargetPort.String(), d.Name)
				}
			}
		}
	}

	problems = append(problems, checkNetworkPolicies(b)...)
	problems = append(problems, checkScaling(b)...)

	// Every Secret the manifests need is documented, so operators know to
	// create it.
	for _, name := range secretNames(b) {
		if !strings.Contains(docs, name) {
			fail("Secret %s is referenced but docs/deploy.md does not say how to create it", name)
		}
	}
	sort.Strings(problems)
	return problems
}

func selects(sel *metav1.LabelSelector, podLabels map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && !s.Empty() && s.Matches(labels.Set(podLabels))
}

// containerPort finds the port a Service or probe refers to, by name or
// number, among the pod's containers.
func containerPort(d *appsv1.Deployment, p intstr.IntOrString) (int32, bool) {
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, cp := range c.Ports {
			if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
				return cp.ContainerPort, true
			}
		}
	}
	return 0, false
}

func checkDeployment(b *builtOverlay, d *appsv1.Deployment) []string {
	var problems []string
	fail := func(format string, args ...any) {
		problems = append(problems, "Deployment/"+d.Name+": "+fmt.Sprintf(format, args...))
	}
	if !selects(d.Spec.Selector, d.Spec.Template.Labels) {
		fail("its selector does not match its pod template")
	}
	pod := d.Spec.Template.Spec
	psc := pod.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		fail("mounts a service account token it never uses (automountServiceAccountToken: false)")
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		fail("no RuntimeDefault seccomp profile")
	}
	if port := d.Spec.Template.Annotations["prometheus.io/port"]; port != "" {
		n, _ := strconv.Atoi(port)
		if _, ok := containerPort(d, intstr.FromInt32(int32(n))); !ok {
			fail("prometheus.io/port %s is not a container port", port)
		}
	}

	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
		// The API server rejects a volume with two sources (a patch that
		// adds one without removing the other); strict decoding does not.
		if b, err := json.Marshal(v.VolumeSource); err == nil {
			var sources map[string]any
			if json.Unmarshal(b, &sources) == nil && len(sources) != 1 {
				fail("volume %s has %d sources, want exactly one", v.Name, len(sources))
			}
		}
		if v.ConfigMap != nil && b.configMaps[v.ConfigMap.Name] == nil {
			fail("volume %s: ConfigMap %s is not in the overlay", v.Name, v.ConfigMap.Name)
		}
	}
	if len(pod.InitContainers) > 0 {
		fail("init containers are not expected")
	}
	for _, c := range pod.Containers {
		cfail := func(format string, args ...any) { fail("container "+c.Name+": "+format, args...) }
		if c.LivenessProbe == nil {
			cfail("no livenessProbe")
		}
		if c.ReadinessProbe == nil {
			cfail("no readinessProbe")
		}
		for _, pr := range []*corev1.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
			if pr == nil {
				continue
			}
			var port intstr.IntOrString
			switch {
			case pr.HTTPGet != nil:
				port = pr.HTTPGet.Port
			case pr.GRPC != nil:
				port = intstr.FromInt32(pr.GRPC.Port)
			case pr.TCPSocket != nil:
				port = pr.TCPSocket.Port
			default:
				cfail("a probe that checks no port")
				continue
			}
			if _, ok := containerPort(d, port); !ok {
				cfail("a probe targets port %s, which the container does not declare", port.String())
			}
		}
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := c.Resources.Requests[res]; !ok {
				cfail("no %s request", res)
			}
			if _, ok := c.Resources.Limits[res]; !ok {
				cfail("no %s limit", res)
			}
		}
		sc := c.SecurityContext
		if sc == nil {
			sc = &corev1.SecurityContext{}
		}
		nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (sc.RunAsNonRoot == nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
		if !nonRoot {
			cfail("may run as root (runAsNonRoot: true)")
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			cfail("root file system is writable (readOnlyRootFilesystem: true)")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			cfail("allows privilege escalation")
		}
		if sc.Privileged != nil && *sc.Privileged {
			cfail("is privileged")
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			cfail("capabilities are not all dropped")
		}
		checkImage(b.name, c.Image, cfail)

		// Environment: the shared ConfigMap, listeners on declared ports,
		// secrets only from Secrets.
		env := map[string]string{}
		for _, ef := range c.EnvFrom {
			if ef.ConfigMapRef != nil {
				cm := b.configMaps[ef.ConfigMapRef.Name]
				if cm == nil {
					cfail("envFrom ConfigMap %s is not in the overlay", ef.ConfigMapRef.Name)
					continue
				}
				for k, v := range cm.Data {
					env[k] = ef.Prefix + v
				}
			}
		}
		mounts := map[string]corev1.VolumeMount{}
		for _, m := range c.VolumeMounts {
			mounts[m.MountPath] = m
			if _, ok := volumes[m.Name]; !ok {
				cfail("mounts volume %s, which the pod does not define", m.Name)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				problems = append(problems, checkConfigMapPath(b, d, e, mounts, volumes)...)
			}
			if e.ValueFrom != nil {
				switch {
				case e.ValueFrom.SecretKeyRef != nil:
				case sensitiveEnv.MatchString(e.Name):
					cfail("%s comes from somewhere other than a Secret", e.Name)
				}
				continue
			}
			env[e.Name] = e.Value
			if sensitiveEnv.MatchString(e.Name) && !inSecretVolume(e.Value, mounts, volumes) {
				cfail("%s=%q is neither a secretKeyRef nor a file in a mounted Secret", e.Name, e.Value)
			}
		}
		if u := env["CUSTOMS_NATS_URL"]; !strings.HasPrefix(u, "nats://") {
			cfail("CUSTOMS_NATS_URL=%q, want the NATS cluster", u)
		}
		if r := env["CUSTOMS_STREAM_REPLICAS"]; r != "3" {
			cfail("CUSTOMS_STREAM_REPLICAS=%q, want 3", r)
		}
		if env["OTEL_TRACES_EXPORTER"] != "otlp" || env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "" {
			cfail("does not export traces over OTLP")
		}
		for k, v := range env {
			if !strings.HasSuffix(k, "_LISTEN") {
				continue
			}
			host, port, err := net.SplitHostPort(v)
			n, _ := strconv.Atoi(port)
			if err != nil || (host != "0.0.0.0" && host != "") {
				cfail("%s=%q does not listen on every interface", k, v)
			} else if _, ok := containerPort(d, intstr.FromInt32(int32(n))); !ok {
				cfail("%s=%q listens on a port the container does not declare", k, v)
			}
		}
	}
	return problems
}

// checkConfigMapPath: a variable that names a file in a mounted ConfigMap
// names one of its keys (CUSTOMS_SIGNER_POLICY, CUSTOMS_PROMOTION_RULES).
func checkConfigMapPath(b *builtOverlay, d *appsv1.Deployment, e corev1.EnvVar, mounts map[string]corev1.VolumeMount, volumes map[string]corev1.Volume) []string {
	// The value may be a list such as "name=/path,other=/path".
	var problems []string
	for _, part := range strings.Split(e.Value, ",") {
		_, path, _ := strings.Cut(part, "=")
		if path == "" {
			path = part
		}
		if !strings.HasPrefix(path, "/") {
			continue
		}
		m, ok := mounts[filepath.Dir(path)]
		if !ok || volumes[m.Name].ConfigMap == nil {
			continue
		}
		cm := b.configMaps[volumes[m.Name].ConfigMap.Name]
		if cm == nil {
			continue // reported with the volume
		}
		if _, ok := cm.Data[filepath.Base(path)]; !ok {
			problems = append(problems, fmt.Sprintf("Deployment/%s: %s=%q names no key of ConfigMap %s", d.Name, e.Name, e.Value, cm.Name))
		}
	}
	return problems
}

// inSecretVolume: path is a file under a mount whose volume is a Secret.
func inSecretVolume(path string, mounts map[string]corev1.VolumeMount, volumes map[string]corev1.Volume) bool {
	for dir, m := range mounts {
		if filepath.Dir(path) == filepath.Clean(dir) && volumes[m.Name].Secret != nil {
			return true
		}
	}
	return false
}

func checkImage(overlay, image string, fail func(string, ...any)) {
	name, digest, hasDigest := strings.Cut(image, "@")
	tag := ""
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		tag = name[i+1:]
	}
	switch {
	case tag == "latest":
		fail("image %s uses :latest", image)
	case tag == "" && !hasDigest:
		fail("image %s has neither tag nor digest", image)
	case isProd(overlay) && !hasDigest && !semverTag.MatchString(tag):
		fail("image %s: a production overlay pins a release tag or a digest", image)
	case hasDigest && !strings.HasPrefix(digest, "sha256:"):
		fail("image %s: bad digest", image)
	}
}

// secretNames are the Secrets the overlay's pods reference.
func secretNames(b *builtOverlay) []string {
	set := map[string]bool{}
	for _, d := range b.deployments {
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Secret != nil {
				set[v.Secret.SecretName] = true
			}
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					set[e.ValueFrom.SecretKeyRef.Name] = true
				}
			}
			for _, ef := range c.EnvFrom {
				if ef.SecretRef != nil {
					set[ef.SecretRef.Name] = true
				}
			}
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// checkNetworkPolicies: Customs pods are denied by default, and each port a
// Service exposes is opened by a policy that selects the pods behind it.
func checkNetworkPolicies(b *builtOverlay) []string {
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	for _, d := range b.deployments {
		podLabels := d.Spec.Template.Labels
		var denyIn, denyOut, dns, nats bool
		for _, np := range b.netpols {
			if !selects(&np.Spec.PodSelector, podLabels) {
				continue
			}
			if len(np.Spec.Ingress) == 0 && slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
				denyIn = true
			}
			if len(np.Spec.Egress) == 0 && slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
				denyOut = true
			}
			for _, r := range np.Spec.Egress {
				dns = dns || rulePorts(r.Ports, 53)
				nats = nats || rulePorts(r.Ports, 4222)
			}
		}
		if !denyIn || !denyOut {
			fail("Deployment/%s: no default-deny NetworkPolicy (ingress and egress) selects its pods", d.Name)
		}
		if !dns || !nats {
			fail("Deployment/%s: NetworkPolicies do not let it reach DNS and NATS", d.Name)
		}
	}
	for _, s := range b.services {
		for _, d := range b.deployments {
			if !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				continue
			}
			for _, p := range s.Spec.Ports {
				port, ok := containerPort(d, p.TargetPort)
				if !ok {
					continue // reported with the Service
				}
				var open bool
				for _, np := range b.netpols {
					if !selects(&np.Spec.PodSelector, d.Spec.Template.Labels) {
						continue
					}
					for _, r := range np.Spec.Ingress {
						open = open || rulePorts(r.Ports, port)
					}
				}
				if !open {
					fail("Service/%s: port %d of Deployment/%s is closed by the NetworkPolicies", s.Name, port, d.Name)
				}
			}
		}
	}
	return problems
}

func rulePorts(ports []networkingv1.NetworkPolicyPort, port int32) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		if p.Port != nil && p.Port.Type == intstr.Int && p.Port.IntVal == port {
			return true
		}
	}
	return false
}

// checkScaling: the scanner scales either by a HorizontalPodAutoscaler or
// by a KEDA ScaledObject on its consumer lag, never both.
func checkScaling(b *builtOverlay) []string {
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	var hpa *autoscalingv2.HorizontalPodAutoscaler
	for _, h := range b.hpas {
		ref := h.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || !slices.ContainsFunc(b.deployments, func(d *appsv1.Deployment) bool { return d.Name == ref.Name }) {
			fail("HorizontalPodAutoscaler/%s: targets %s/%s, which is not in the overlay", h.Name, ref.Kind, ref.Name)
		}
		if ref.Name == "scanner" {
			hpa = h
		}
	}
	switch {
	case hpa != nil && len(b.scaled) > 0:
		fail("the scanner has both a HorizontalPodAutoscaler and a KEDA ScaledObject; they would fight")
	case hpa == nil && len(b.scaled) == 0:
		fail("the scanner has no autoscaler (HorizontalPodAutoscaler or KEDA ScaledObject)")
	case hpa != nil:
		if hpa.Spec.MinReplicas == nil || hpa.Spec.MaxReplicas < *hpa.Spec.MinReplicas {
			fail("HorizontalPodAutoscaler/%s: bad replica range", hpa.Name)
		}
		if isProd(b.name) && (hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2) {
			fail("HorizontalPodAutoscaler/%s: production runs at least two scanners", hpa.Name)
		}
		if len(hpa.Spec.Metrics) == 0 {
			fail("HorizontalPodAutoscaler/%s: no metric", hpa.Name)
		}
	}
	for _, d := range b.deployments {
		if d.Name == "scanner" && d.Spec.Replicas != nil {
			fail("Deployment/scanner: sets replicas, which every apply would reset under the autoscaler")
		}
	}
	ns := ""
	if len(b.namespaces) == 1 {
		ns = b.namespaces[0].Name
	}
	for _, so := range b.scaled {
		problems = append(problems, checkScaledObject(so, ns, b)...)
	}
	return problems
}

// checkScaledObject validates a KEDA ScaledObject by hand: the CRD is not in
// client-go's scheme.
func checkScaledObject(so object, namespace string, b *builtOverlay) []string {
	var problems []string
	fail := func(format string, args ...any) {
		problems = append(problems, "ScaledObject/"+so.Name+": "+fmt.Sprintf(format, args...))
	}
	if so.APIVersion != "keda.sh/v1alpha1" {
		fail("apiVersion %q, want keda.sh/v1alpha1", so.APIVersion)
	}
	spec, _ := so.Raw["spec"].(map[string]any)
	if spec == nil {
		fail("no spec")
		return problems
	}
	known := []string{"scaleTargetRef", "minReplicaCount", "maxReplicaCount", "pollingInterval", "cooldownPeriod", "idleReplicaCount", "initialCooldownPeriod", "advanced", "fallback", "triggers"}
	for k := range spec {
		if !slices.Contains(known, k) {
			fail("unknown spec field %q", k)
		}
	}
	target, _ := spec["scaleTargetRef"].(map[string]any)
	if name, _ := target["name"].(string); name != "scanner" || !slices.ContainsFunc(b.deployments, func(d *appsv1.Deployment) bool { return d.Name == name }) {
		fail("scaleTargetRef %v is not the scanner Deployment", target)
	}
	if kind, ok := target["kind"].(string); ok && kind != "Deployment" {
		fail("scaleTargetRef kind %q", kind)
	}
	minR, okMin := number(spec["minReplicaCount"])
	maxR, okMax := number(spec["maxReplicaCount"])
	if !okMin || !okMax || minR < 2 || maxR < minR {
		fail("replica range %v..%v: want at least two scanners", spec["minReplicaCount"], spec["maxReplicaCount"])
	}
	triggers, _ := spec["triggers"].([]any)
	if len(triggers) == 0 {
		fail("no trigger")
		return problems
	}
	trig, _ := triggers[0].(map[string]any)
	if typ, _ := trig["type"].(string); typ != "nats-jetstream" {
		fail("trigger type %q, want nats-jetstream", typ)
	}
	md, _ := trig["metadata"].(map[string]any)
	str := func(k string) string { s, _ := md[k].(string); return s }
	for k, v := range md {
		if _, ok := v.(string); !ok {
			fail("trigger metadata %s must be a string, is %T", k, v)
		}
	}
	if str("stream") != "ARTIFACTS" || str("consumer") != "scanner" {
		fail("trigger watches %s/%s, want the scanner's durable consumer ARTIFACTS/scanner", str("stream"), str("consumer"))
	}
	if n, err := strconv.Atoi(str("lagThreshold")); err != nil || n <= 0 {
		fail("lagThreshold %q is not a positive number", str("lagThreshold"))
	}
	if str("account") == "" {
		fail("no account")
	}
	host, port, err := net.SplitHostPort(str("natsServerMonitoringEndpoint"))
	if err != nil || port != "8222" {
		fail("natsServerMonitoringEndpoint %q: want host:8222", str("natsServerMonitoringEndpoint"))
	} else if want := "nats-headless." + namespace + ".svc.cluster.local"; host != want {
		fail("natsServerMonitoringEndpoint host %q, want %q (the chart's headless service in this namespace)", host, want)
	}
	return problems
}

// number reads a YAML number, whichever Go type the decoder chose.
func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

func readDocs(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "docs/deploy.md"))
	if err != nil {
		t.Fatalf("docs/deploy.md: %v", err)
	}
	return string(b)
}

func TestKustomizeOverlayPolicies(t *testing.T) {
	t.Parallel()
	docs := readDocs(t)
	for _, overlay := range overlays(t) {
		t.Run(overlay, func(t *testing.T) {
			t.Parallel()
			b := index(overlay, buildOverlay(t, overlay))
			if problems := checkOverlay(b, docs); len(problems) > 0 {
				t.Errorf("overlay %s:%s", overlay, joinErrs(problems))
			}
		})
	}
}

// The prod overlays differ where they must: the KEDA variant swaps the
// scanner's HorizontalPodAutoscaler for a ScaledObject, nothing else.
func TestKEDAVariant(t *testing.T) {
	t.Parallel()
	prod := index("prod", buildOverlay(t, "prod"))
	keda := index("prod-keda", buildOverlay(t, "prod-keda"))
	if len(prod.hpas) != 1 || len(prod.scaled) != 0 {
		t.Errorf("prod: want the scanner HPA and no ScaledObject, have %d HPA, %d ScaledObject", len(prod.hpas), len(prod.scaled))
	}
	if len(keda.hpas) != 0 || len(keda.scaled) != 1 {
		t.Errorf("prod-keda: want one ScaledObject and no HPA, have %d HPA, %d ScaledObject", len(keda.hpas), len(keda.scaled))
	}
	if len(prod.objects) != len(keda.objects) {
		t.Errorf("prod has %d objects, prod-keda %d: the variant should swap one for one", len(prod.objects), len(keda.objects))
	}
}

// Each case breaks one rule in a freshly built prod overlay and expects the
// checks to say so.
func TestCheckOverlayCatches(t *testing.T) {
	t.Parallel()
	docs := readDocs(t)
	dep := func(b *builtOverlay, name string) *appsv1.Deployment {
		for _, d := range b.deployments {
			if d.Name == name {
				return d
			}
		}
		t.Fatalf("no Deployment %s", name)
		return nil
	}
	tests := []struct {
		name   string
		mutate func(b *builtOverlay)
		want   string
	}{
		{"no liveness probe", func(b *builtOverlay) { dep(b, "ingest").Spec.Template.Spec.Containers[0].LivenessProbe = nil }, "Deployment/ingest: container ingest: no livenessProbe"},
		{"no memory limit", func(b *builtOverlay) {
			delete(dep(b, "query").Spec.Template.Spec.Containers[0].Resources.Limits, corev1.ResourceMemory)
		}, "container query: no memory limit"},
		{"latest image", func(b *builtOverlay) {
			dep(b, "signer").Spec.Template.Spec.Containers[0].Image = "ghcr.io/customs-dev/signer:latest"
		}, "uses :latest"},
		{"unpinned prod image", func(b *builtOverlay) {
			dep(b, "signer").Spec.Template.Spec.Containers[0].Image = "ghcr.io/customs-dev/signer:main"
		}, "pins a release tag"},
		{"writable root", func(b *builtOverlay) {
			dep(b, "scanner").Spec.Template.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem = nil
		}, "container scanner: root file system is writable"},
		{"privilege escalation", func(b *builtOverlay) {
			yes := true
			dep(b, "query").Spec.Template.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = &yes
		}, "allows privilege escalation"},
		{"root", func(b *builtOverlay) {
			dep(b, "ingest").Spec.Template.Spec.SecurityContext.RunAsNonRoot = nil
		}, "container ingest: may run as root"},
		{"capabilities kept", func(b *builtOverlay) {
			dep(b, "ingest").Spec.Template.Spec.Containers[0].SecurityContext.Capabilities.Drop = nil
		}, "capabilities are not all dropped"},
		{"inline token", func(b *builtOverlay) {
			c := &dep(b, "ingest").Spec.Template.Spec.Containers[0]
			c.Env = append(c.Env, corev1.EnvVar{Name: "CUSTOMS_DISTRIBUTION_TOKEN", Value: "hunter2"})
		}, "CUSTOMS_DISTRIBUTION_TOKEN=\"hunter2\" is neither"},
		{"token file outside a Secret", func(b *builtOverlay) {
			c := &dep(b, "ingest").Spec.Template.Spec.Containers[0]
			for i := range c.Env {
				if c.Env[i].Name == "CUSTOMS_DISTRIBUTION_TOKEN_FILE" {
					c.Env[i].Value = "/tmp/token"
				}
			}
		}, "CUSTOMS_DISTRIBUTION_TOKEN_FILE=\"/tmp/token\""},
		{"Secret in the manifests", func(b *builtOverlay) {
			b.objects = append(b.objects, object{Kind: "Secret", Name: "oops", Namespace: "customs"})
		}, "Secret/oops: Secrets are created out of band"},
		{"no PDB", func(b *builtOverlay) {
			b.pdbs = slices.DeleteFunc(b.pdbs, func(p *policyv1.PodDisruptionBudget) bool { return p.Name == "signer" })
		}, "Deployment/signer: no PodDisruptionBudget"},
		{"no autoscaler", func(b *builtOverlay) { b.hpas = nil }, "the scanner has no autoscaler"},
		{"one prod scanner", func(b *builtOverlay) { one := int32(1); b.hpas[0].Spec.MinReplicas = &one }, "production runs at least two scanners"},
		{"no network policies", func(b *builtOverlay) { b.netpols = nil }, "Deployment/query: no default-deny NetworkPolicy"},
		{"port closed", func(b *builtOverlay) {
			b.netpols = slices.DeleteFunc(b.netpols, func(np *networkingv1.NetworkPolicy) bool { return np.Name == "query" })
		}, "Service/query: port 9090 of Deployment/query is closed"},
		{"probe on an undeclared port", func(b *builtOverlay) {
			dep(b, "ingest").Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Port = intstr.FromString("metrics")
		}, "a probe targets port metrics"},
		{"single replica streams", func(b *builtOverlay) {
			for name, cm := range b.configMaps {
				if strings.HasPrefix(name, "customs-common") {
					cm.Data["CUSTOMS_STREAM_REPLICAS"] = "1"
				}
			}
		}, "CUSTOMS_STREAM_REPLICAS=\"1\", want 3"},
		{"listener on loopback", func(b *builtOverlay) {
			c := &dep(b, "query").Spec.Template.Spec.Containers[0]
			for i := range c.Env {
				if c.Env[i].Name == "CUSTOMS_ADMIN_LISTEN" {
					c.Env[i].Value = "127.0.0.1:9091"
				}
			}
		}, "CUSTOMS_ADMIN_LISTEN=\"127.0.0.1:9091\" does not listen on every interface"},
		{"two volume sources", func(b *builtOverlay) {
			v := &dep(b, "scanner").Spec.Template.Spec.Volumes[0]
			v.EmptyDir = &corev1.EmptyDirVolumeSource{}
		}, "volume cache has 2 sources"},
		{"rules file not in the ConfigMap", func(b *builtOverlay) {
			c := &dep(b, "promotion").Spec.Template.Spec.Containers[0]
			for i := range c.Env {
				if c.Env[i].Name == "CUSTOMS_PROMOTION_RULES" {
					c.Env[i].Value = "/etc/customs/rules/prod.yaml"
				}
			}
		}, "CUSTOMS_PROMOTION_RULES=\"/etc/customs/rules/prod.yaml\" names no key"},
		{"undocumented Secret", func(b *builtOverlay) {
			d := dep(b, "signer")
			d.Spec.Template.Spec.Volumes = append(d.Spec.Template.Spec.Volumes, corev1.Volume{Name: "x", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "customs-undocumented"}}})
		}, "Secret customs-undocumented is referenced but docs/deploy.md"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := index("prod", buildOverlay(t, "prod"))
			if problems := checkOverlay(b, docs); len(problems) != 0 {
				t.Fatalf("the unbroken overlay already has problems:%s", joinErrs(problems))
			}
			tc.mutate(b)
			problems := checkOverlay(b, docs)
			if !slices.ContainsFunc(problems, func(s string) bool { return strings.Contains(s, tc.want) }) {
				t.Errorf("want a problem containing %q, got:%s", tc.want, joinErrs(problems))
			}
		})
	}
}

func TestCheckScaledObjectCatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(spec map[string]any, md map[string]any)
		want   string
	}{
		{"other consumer", func(_, md map[string]any) { md["consumer"] = "signer" }, "want the scanner's durable consumer"},
		{"other stream", func(_, md map[string]any) { md["stream"] = "DEADLETTER" }, "want the scanner's durable consumer"},
		{"numeric threshold", func(_, md map[string]any) { md["lagThreshold"] = float64(10) }, "must be a string"},
		{"wrong namespace", func(_, md map[string]any) {
			md["natsServerMonitoringEndpoint"] = "nats-headless.other.svc.cluster.local:8222"
		}, "want \"nats-headless.customs.svc.cluster.local\""},
		{"unknown field", func(spec, _ map[string]any) { spec["maxReplicas"] = float64(3) }, "unknown spec field \"maxReplicas\""},
		{"one scanner", func(spec, _ map[string]any) { spec["minReplicaCount"] = float64(1) }, "want at least two scanners"},
		{"wrong target", func(spec, _ map[string]any) { spec["scaleTargetRef"] = map[string]any{"name": "signer"} }, "is not the scanner Deployment"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := index("prod-keda", buildOverlay(t, "prod-keda"))
			if len(b.scaled) != 1 {
				t.Fatalf("want one ScaledObject, have %d", len(b.scaled))
			}
			so := b.scaled[0]
			if problems := checkScaledObject(so, "customs", b); len(problems) != 0 {
				t.Fatalf("the unbroken ScaledObject already has problems:%s", joinErrs(problems))
			}
			spec := so.Raw["spec"].(map[string]any)
			md := spec["triggers"].([]any)[0].(map[string]any)["metadata"].(map[string]any)
			tc.mutate(spec, md)
			problems := checkScaledObject(so, "customs", b)
			if !slices.ContainsFunc(problems, func(s string) bool { return strings.Contains(s, tc.want) }) {
				t.Errorf("want a problem containing %q, got:%s", tc.want, joinErrs(problems))
			}
		})
	}
}
