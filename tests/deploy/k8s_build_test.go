package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// object is one resource of a built overlay: typed when the Kubernetes API
// knows its kind, and always as plain JSON-like data.
type object struct {
	APIVersion string
	Kind       string
	Name       string
	Namespace  string
	Typed      runtime.Object // nil for custom resources (KEDA)
	Raw        map[string]any
}

func (o object) id() string { return o.Kind + "/" + o.Name }

// overlays lists the kustomize overlays under deploy/k8s/overlays.
func overlays(t *testing.T) []string {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "deploy/k8s/overlays")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names
}

// strictDecoder rejects unknown and duplicate fields, as
// `kubectl apply --validate=strict` does on the server.
var strictDecoder = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, kjson.SerializerOptions{Strict: true})

// buildOverlay runs kustomize on the overlay and decodes every object
// strictly against the API types client-go ships. Objects of kinds the
// scheme does not know (custom resources) are returned untyped for their own
// checks.
func buildOverlay(t *testing.T, overlay string) []object {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "deploy/k8s/overlays", overlay)
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", overlay, err)
	}
	var objs []object
	for _, r := range m.Resources() {
		data, err := r.MarshalJSON()
		if err != nil {
			t.Fatalf("%s: %s: %v", overlay, r.CurId(), err)
		}
		o := object{APIVersion: r.GetApiVersion(), Kind: r.GetKind(), Name: r.GetName(), Namespace: r.GetNamespace()}
		if o.Raw, err = r.Map(); err != nil {
			t.Fatalf("%s: %s: %v", overlay, o.id(), err)
		}
		typed, _, err := strictDecoder.Decode(data, nil, nil)
		switch {
		case err == nil:
			o.Typed = typed
		case runtime.IsNotRegisteredError(err):
			// A custom resource: checked by its own rules.
		default:
			if strictErr, ok := runtime.AsStrictDecodingError(err); ok {
				var msgs []string
				for _, e := range strictErr.Errors() {
					msgs = append(msgs, e.Error())
				}
				t.Errorf("%s: %s does not match the %s API: %s", overlay, o.id(), o.APIVersion, strings.Join(msgs, "; "))
				continue
			}
			t.Errorf("%s: %s does not decode: %v", overlay, o.id(), err)
			continue
		}
		objs = append(objs, o)
	}
	return objs
}

// Every overlay builds, and every object in it is a valid object of its
// API, unknown fields and all.
func TestKustomizeOverlaysBuildAndDecodeStrictly(t *testing.T) {
	t.Parallel()
	names := overlays(t)
	for _, want := range []string{"dev", "prod"} {
		if !slices.Contains(names, want) {
			t.Errorf("no overlay %q under deploy/k8s/overlays (have %v)", want, names)
		}
	}
	for _, overlay := range names {
		t.Run(overlay, func(t *testing.T) {
			t.Parallel()
			objs := buildOverlay(t, overlay)
			if len(objs) == 0 {
				t.Fatal("the overlay builds nothing")
			}
			for _, o := range objs {
				if o.Typed == nil && o.Kind != "ScaledObject" {
					t.Errorf("%s (%s): a kind neither the Kubernetes API nor these tests know", o.id(), o.APIVersion)
				}
			}
		})
	}
}

// The strict decoder is what catches a misspelt field: prove it does.
func TestStrictDecoderRejectsUnknownFields(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		doc  string
		ok   bool
	}{
		{"valid", `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"},"spec":{"template":{"spec":{"containers":[{"name":"x","image":"x:1","readinessProbe":{"httpGet":{"path":"/readyz","port":8080}}}]}}}}`, true},
		{"misspelt field", `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"},"spec":{"template":{"spec":{"containers":[{"name":"x","image":"x:1","readinesProbe":{"httpGet":{"path":"/readyz","port":8080}}}]}}}}`, false},
		{"wrong type", `{"apiVersion":"v1","kind":"Service","metadata":{"name":"x"},"spec":{"ports":[{"port":"eighty"}]}}`, false},
		{"duplicate field", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"a":"1"},"data":{"b":"2"}}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := strictDecoder.Decode([]byte(tc.doc), nil, nil)
			if (err == nil) != tc.ok {
				t.Errorf("decode error = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
