package scanner_test

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/nats-io/nats.go/jetstream"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/testkit"
	"github.com/customs-dev/customs/services/scanner/fixtures"
)

// fixtureImages builds the fixture images.
func fixtureImages(t *testing.T) map[string]v1.Image {
	t.Helper()
	bin, err := goBinary()
	if err != nil {
		t.Fatalf("build Go binary fixture: %v", err)
	}
	imgs := map[string]v1.Image{}
	for name, files := range map[string][]fixtures.File{
		"alpine": fixtures.AlpineFiles(),
		"debian": fixtures.DebianFiles(),
		"gobin":  fixtures.GoBinaryFiles(bin),
		"jar":    fixtures.JarFiles(),
	} {
		l, err := fixtures.Layer(files...)
		if err != nil {
			t.Fatal(err)
		}
		if imgs[name], err = fixtures.Image(l); err != nil {
			t.Fatal(err)
		}
	}
	return imgs
}

// wantFindings are the findings of each fixture against vulndb's
// advisories: (id, package, installed, fixed, severity).
var wantFindings = map[string][]string{
	"alpine": {
		"CVE-2023-6129 libcrypto3 3.1.4-r0 3.1.4-r3 SEVERITY_MEDIUM",
		"CVE-2023-6129 libssl3 3.1.4-r0 3.1.4-r3 SEVERITY_MEDIUM",
		"CVE-2023-6237 libcrypto3 3.1.4-r0 3.1.4-r4 SEVERITY_MEDIUM",
		"CVE-2023-6237 libssl3 3.1.4-r0 3.1.4-r4 SEVERITY_MEDIUM",
		"CVE-2024-0727 libcrypto3 3.1.4-r0 3.1.4-r5 SEVERITY_MEDIUM",
		"CVE-2024-0727 libssl3 3.1.4-r0 3.1.4-r5 SEVERITY_MEDIUM",
	},
	"debian": {
		"CVE-2023-5678 libssl3 3.0.11-1~deb12u2 3.0.13-1~deb12u1 SEVERITY_LOW",
		"CVE-2024-0727 libssl3 3.0.11-1~deb12u2 3.0.13-1~deb12u1 SEVERITY_LOW",
	},
	"gobin": {
		"CVE-2022-32149 golang.org/x/text v0.3.7 0.3.8 SEVERITY_HIGH",
	},
	// log4j-core is named by its pom.properties, commons-text only by the
	// Java DB.
	"jar": {
		"CVE-2021-44228 org.apache.logging.log4j:log4j-core 2.14.1 2.15.0, 2.3.1, 2.12.2 SEVERITY_CRITICAL",
		"CVE-2022-42889 org.apache.commons:commons-text 1.9 1.10.0 SEVERITY_CRITICAL",
	},
}

func TestScanFixtureImages(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	imgs := fixtureImages(t)
	svc, _ := e.start(e.config(), e.conn.JS, testkit.Logger(t))

	refs := map[string]*customsv1.ArtifactRef{}
	for name, img := range imgs {
		refs[name] = e.push(e.registry, img, "fixtures/"+name, "v1")
		e.pushed(refs[name])
	}
	got := byDigest(e.results(len(imgs), 2*time.Minute))
	reports, err := e.conn.JS.ObjectStore(context.Background(), backbone.BucketReports)
	if err != nil {
		t.Fatal(err)
	}
	for name, ref := range refs {
		t.Run(name, func(t *testing.T) {
			evts := got[ref.GetDigest()]
			if len(evts) != 1 || evts[0].GetScanned() == nil {
				t.Fatalf("want one artifact.scanned for %s, got %v", name, evts)
			}
			evt := evts[0]
			sc := evt.GetScanned()
			var keys []string
			for _, f := range sc.GetFindings() {
				keys = append(keys, findingKey(f))
				if f.GetTitle() == "" {
					t.Errorf("finding %s has no title", findingKey(f))
				}
			}
			sort.Strings(keys)
			if !slices.Equal(keys, wantFindings[name]) {
				t.Errorf("findings:\n got %q\nwant %q", keys, wantFindings[name])
			}
			sum := sc.GetSummary()
			c := sum.GetCounts()
			if total := c.GetCritical() + c.GetHigh() + c.GetMedium() + c.GetLow() + c.GetUnknown(); int(total) != len(wantFindings[name]) {
				t.Errorf("counts %v do not add up to %d findings", c, len(wantFindings[name]))
			}
			if sum.GetScannerVersion() != "v0.74.0" || sum.GetScanner() != "trivy" {
				t.Errorf("scanner %q %q, want trivy v0.74.0", sum.GetScanner(), sum.GetScannerVersion())
			}
			if !strings.Contains(sum.GetDbVersion(), e.dbDigest.String()) {
				t.Errorf("db version %q does not name the DB artifact %s", sum.GetDbVersion(), e.dbDigest)
			}
			if got := sum.GetDbUpdatedAt().AsTime(); !got.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
				t.Errorf("db updated at %v", got)
			}
			if sum.GetPackageCount() == 0 {
				t.Errorf("no packages counted")
			}
			if evt.GetCorrelationId() != "corr-"+ref.GetDigest() {
				t.Errorf("correlation id %q not kept", evt.GetCorrelationId())
			}
			if sc.GetReportObject() != backbone.ReportObject(ref.GetDigest()) || sc.GetSbomObject() != backbone.SBOMObject(ref.GetDigest()) {
				t.Errorf("object names %q %q", sc.GetReportObject(), sc.GetSbomObject())
			}

			var report struct {
				ArtifactName string
				Results      []struct {
					Packages        []json.RawMessage
					Vulnerabilities []struct{ VulnerabilityID string }
				}
			}
			readJSON(t, reports, sc.GetReportObject(), &report)
			nvulns := 0
			for _, r := range report.Results {
				nvulns += len(r.Vulnerabilities)
			}
			if nvulns != len(wantFindings[name]) || !strings.Contains(report.ArtifactName, ref.GetDigest()) {
				t.Errorf("stored report: artifact %q with %d vulnerabilities, want %d", report.ArtifactName, nvulns, len(wantFindings[name]))
			}
			var bom struct {
				BOMFormat  string `json:"bomFormat"`
				Components []struct {
					Name    string `json:"name"`
					Version string `json:"version"`
				} `json:"components"`
			}
			readJSON(t, reports, sc.GetSbomObject(), &bom)
			if bom.BOMFormat != "CycloneDX" || len(bom.Components) == 0 {
				t.Errorf("stored SBOM: format %q with %d components", bom.BOMFormat, len(bom.Components))
			}
		})
	}
	if svc.Scans() != int64(len(imgs)) {
		t.Errorf("service counted %d scans, want %d", svc.Scans(), len(imgs))
	}
}

func readJSON(t *testing.T, store jetstream.ObjectStore, name string, v any) {
	t.Helper()
	data, err := store.GetBytes(context.Background(), name)
	if err != nil {
		t.Fatalf("object %s: %v", name, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("object %s: %v", name, err)
	}
}

func TestScanFailuresPublishReason(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start(e.config(), e.conn.JS, testkit.Logger(t))

	img, err := fixtures.Alpine()
	if err != nil {
		t.Fatal(err)
	}
	alpine := e.push(e.registry, img, "fixtures/alpine", "v1")
	missing := &customsv1.ArtifactRef{Registry: e.registry, Repository: "fixtures/alpine", Digest: "sha256:" + strings.Repeat("ab", 32), Tag: "gone"}
	offList := &customsv1.ArtifactRef{Registry: "169.254.169.254", Repository: "latest/meta-data", Digest: alpine.GetDigest()}
	notImage := &customsv1.ArtifactRef{Registry: e.registry, Repository: "customs/trivy-db", Digest: e.dbDigest.String(), Tag: "2"}

	tests := []struct {
		name   string
		ref    *customsv1.ArtifactRef
		reason string
	}{
		{name: "missing manifest", ref: missing, reason: "MANIFEST_UNKNOWN"},
		{name: "registry off the allow-list", ref: offList, reason: "not on the allow-list"},
		{name: "not an image", ref: notImage, reason: "not a container image"},
	}
	for _, tt := range tests {
		e.pushed(tt.ref)
	}
	got := byDigest(e.results(len(tests), time.Minute))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var failed *customsv1.ArtifactFailed
			for _, evt := range got[tt.ref.GetDigest()] {
				if f := evt.GetFailed(); f != nil && evt.GetArtifact().GetRegistry() == tt.ref.GetRegistry() && evt.GetArtifact().GetRepository() == tt.ref.GetRepository() {
					failed = f
				}
			}
			if failed == nil {
				t.Fatalf("no artifact.failed for %v in %v", tt.ref, got[tt.ref.GetDigest()])
			}
			if failed.GetStage() != customsv1.Stage_STAGE_SCAN || !strings.Contains(failed.GetReason(), tt.reason) {
				t.Errorf("failure %v, want stage SCAN and a reason containing %q", failed, tt.reason)
			}
		})
	}
}

func TestTwoWorkersScanEveryArtifactOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 12
	var refs []*customsv1.ArtifactRef
	for i := range n {
		img, err := fixtures.Variant(fixtures.AlpineFiles(), i, true)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, e.push(e.registry, img, "fleet/app", "v"+string(rune('a'+i))))
	}
	for _, r := range refs {
		e.pushed(r)
	}
	_, jsA := e.connect()
	_, jsB := e.connect()
	a, _ := e.start(e.config(), jsA, testkit.Logger(t).With("worker", "a"))
	b, _ := e.start(e.config(), jsB, testkit.Logger(t).With("worker", "b"))

	// Wait for every result, then let any double scan surface before counting.
	e.results(n, 2*time.Minute)
	time.Sleep(500 * time.Millisecond)
	got := e.results(n, time.Second)
	if len(got) != n {
		t.Errorf("stream has %d results for %d artifacts", len(got), n)
	}
	seen := byDigest(got)
	for _, r := range refs {
		if evts := seen[r.GetDigest()]; len(evts) != 1 || evts[0].GetScanned() == nil {
			t.Errorf("%s: want one artifact.scanned, got %v", r.GetDigest(), evts)
		}
	}
	if a.Scans()+b.Scans() != n {
		t.Errorf("workers scanned %d + %d times, want %d in total", a.Scans(), b.Scans(), n)
	}
	t.Logf("worker a scanned %d, worker b %d", a.Scans(), b.Scans())
}

func TestKilledWorkerLosesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	gate := newGateProxy(t, e.registry)
	img, err := fixtures.Debian()
	if err != nil {
		t.Fatal(err)
	}
	ref := e.push(gate.host, img, "fixtures/debian", "v1")

	cfg := e.config(gate.host)
	cfg.AckWait = 2 * time.Second
	ncA, jsA := e.connect()
	a, stopA := e.start(cfg, jsA, testkit.Logger(t).With("worker", "a"))
	e.pushed(ref)
	select {
	case <-gate.entered:
	case <-time.After(time.Minute):
		t.Fatal("worker a never started pulling")
	}
	// Kill worker a mid-scan: its connection goes away first, so it can
	// neither ack nor nak; only the ack wait returns the message.
	ncA.Close()
	stopA()

	_, jsB := e.connect()
	cfgB := e.config(gate.host)
	cfgB.AckWait = cfg.AckWait
	b, _ := e.start(cfgB, jsB, testkit.Logger(t).With("worker", "b"))
	got := e.results(1, time.Minute)
	if len(got) != 1 || got[0].GetScanned() == nil || got[0].GetArtifact().GetDigest() != ref.GetDigest() {
		t.Fatalf("want one artifact.scanned for %s, got %v", ref.GetDigest(), got)
	}
	if a.Scans() != 0 || b.Scans() != 1 {
		t.Errorf("scans: killed worker %d, survivor %d; want 0 and 1", a.Scans(), b.Scans())
	}
}
