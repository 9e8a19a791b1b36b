package scanner_test

import (
	"context"
	"net"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	trivydb "github.com/aquasecurity/trivy/pkg/db"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/testkit"
	"github.com/customs-dev/customs/services/scanner/fixtures"
	"github.com/customs-dev/customs/services/scanner/vulndb"
)

func scannedKeys(t *testing.T, evt *customsv1.Event) []string {
	t.Helper()
	if evt.GetScanned() == nil {
		t.Fatalf("want artifact.scanned, got %v", evt)
	}
	var keys []string
	for _, f := range evt.GetScanned().GetFindings() {
		keys = append(keys, findingKey(f))
	}
	sort.Strings(keys)
	return keys
}

func TestDBUpdateIsPickedUpOnInterval(t *testing.T) {
	t.Parallel()
	e := newEnvOwningDB(t)
	cfg := e.config()
	cfg.DBUpdateInterval = 100 * time.Millisecond
	svc, _ := e.start(cfg, e.conn.JS, testkit.Logger(t))
	before := svc.DB()

	// A newer DB in which Debian no longer lists CVE-2023-5678.
	adv := vulndb.Default()
	adv.UpdatedAt = adv.UpdatedAt.Add(31 * 24 * time.Hour)
	adv.Advisories = slices.DeleteFunc(adv.Advisories, func(a vulndb.Advisory) bool {
		return a.Bucket == "debian 12" && a.ID == "CVE-2023-5678"
	})
	if _, _, err := vulndb.Publish(context.Background(), e.registry, vulndb.DefaultRepository, vulndb.WithAdvisories(adv)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for svc.DB().UpdatedAt.Equal(before.UpdatedAt) {
		if time.Now().After(deadline) {
			t.Fatalf("DB still %v after publishing a new one", svc.DB())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !svc.DB().UpdatedAt.Equal(adv.UpdatedAt) || svc.DB().Version == before.Version {
		t.Fatalf("DB after update %v, want updated at %v with a new digest", svc.DB(), adv.UpdatedAt)
	}

	img, err := fixtures.Debian()
	if err != nil {
		t.Fatal(err)
	}
	e.pushed(e.push(e.registry, img, "fixtures/debian", "v1"))
	got := scannedKeys(t, e.results(1, time.Minute)[0])
	want := []string{"CVE-2024-0727 libssl3 3.0.11-1~deb12u2 3.0.13-1~deb12u1 SEVERITY_LOW"}
	if !slices.Equal(got, want) {
		t.Errorf("findings with the new DB %q, want %q", got, want)
	}
}

func TestPreSeededDBWithoutUpdates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	// No repository at all: the scanner must not try to download.
	cfg.DBRepositories = nil
	cfg.SkipDBUpdate = true
	if _, err := vulndb.Build(trivydb.Dir(cfg.CacheDir), vulndb.Default()); err != nil {
		t.Fatal(err)
	}
	svc, _ := e.start(cfg, e.conn.JS, testkit.Logger(t))
	if svc.DB().Version != "2" {
		t.Errorf("pre-seeded DB version %q, want schema 2 without a digest", svc.DB().Version)
	}
	img, err := fixtures.Debian()
	if err != nil {
		t.Fatal(err)
	}
	e.pushed(e.push(e.registry, img, "fixtures/debian", "v1"))
	if got := scannedKeys(t, e.results(1, time.Minute)[0]); !slices.Equal(got, wantFindings["debian"]) {
		t.Errorf("findings %q, want %q", got, wantFindings["debian"])
	}
}

func TestUnreachableRegistryIsRetriedThenFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// A port nobody listens on: an allowed registry that is down.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	_ = ln.Close()

	cfg := e.config(down)
	cfg.MaxDeliver = 3
	e.start(cfg, e.conn.JS, testkit.Logger(t))
	img, err := fixtures.Alpine()
	if err != nil {
		t.Fatal(err)
	}
	ref := e.push(e.registry, img, "fixtures/alpine", "v1")
	ref.Registry = down
	e.pushed(ref)
	got := e.results(1, time.Minute)
	f := got[0].GetFailed()
	if f == nil || !strings.Contains(f.GetReason(), "connection refused") {
		t.Fatalf("want artifact.failed about the refused connection, got %v", got[0])
	}
	// The failure is published only on the last allowed attempt.
	info, err := e.conn.JS.Consumer(context.Background(), "ARTIFACTS", "scanner")
	if err != nil {
		t.Fatal(err)
	}
	ci, err := info.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ci.Delivered.Consumer != uint64(cfg.MaxDeliver) {
		t.Errorf("consumer delivered %d times, want %d attempts before the failure", ci.Delivered.Consumer, cfg.MaxDeliver)
	}
}

func TestSlowScanIsNotRedelivered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	gate := newGateProxy(t, e.registry)
	cfg := e.config(gate.host)
	cfg.AckWait = time.Second
	svc, _ := e.start(cfg, e.conn.JS, testkit.Logger(t))
	img, err := fixtures.Alpine()
	if err != nil {
		t.Fatal(err)
	}
	e.pushed(e.push(gate.host, img, "fixtures/alpine", "v1"))
	select {
	case <-gate.entered:
	case <-time.After(time.Minute):
		t.Fatal("scan never started pulling")
	}
	// Hold the pull for three ack waits: only heartbeats keep the message.
	time.Sleep(3 * cfg.AckWait)
	close(gate.release)
	if got := scannedKeys(t, e.results(1, time.Minute)[0]); !slices.Equal(got, wantFindings["alpine"]) {
		t.Errorf("findings %q", got)
	}
	time.Sleep(cfg.AckWait)
	info, err := e.conn.JS.Consumer(context.Background(), "ARTIFACTS", "scanner")
	if err != nil {
		t.Fatal(err)
	}
	ci, err := info.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ci.Delivered.Consumer != 1 || svc.Scans() != 1 {
		t.Errorf("slow scan delivered %d times and scanned %d times, want once", ci.Delivered.Consumer, svc.Scans())
	}
}

func TestScanTimeoutPublishesFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	gate := newGateProxy(t, e.registry) // holds the pull until the test ends
	cfg := e.config(gate.host)
	cfg.ScanTimeout = 500 * time.Millisecond
	cfg.MaxDeliver = 1
	e.start(cfg, e.conn.JS, testkit.Logger(t))
	img, err := fixtures.Alpine()
	if err != nil {
		t.Fatal(err)
	}
	e.pushed(e.push(gate.host, img, "fixtures/alpine", "v1"))
	got := e.results(1, time.Minute)
	if f := got[0].GetFailed(); f == nil || !strings.Contains(f.GetReason(), "scan timed out after 500ms") {
		t.Fatalf("want artifact.failed for the timeout, got %v", got[0])
	}
}
