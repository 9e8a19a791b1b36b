package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/metrics"
	"github.com/customs-dev/customs/services/query/query"
)

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d", url, resp.StatusCode)
	}
	return string(b)
}

// metricValue returns the value of the first sample whose line matches re.
func metricValue(text string, re *regexp.Regexp) (float64, bool) {
	m := re.FindStringSubmatch(text)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

func TestMetricsAndProbes(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	if err := metrics.RegisterConsumers(reg, s.conn.JS, backbone.StreamArtifacts, query.ProjectionDurable); err != nil {
		t.Fatal(err)
	}
	digest := s.push("team/metrics", "v1").String()
	eventually(t, "artifact", func() error { _, err := getByDigest(ctx, s.client, digest); return err })

	text := scrape(t, s.ingest+"/metrics")
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`customs_ingest_webhooks_total\{outcome="accepted",receiver="distribution",status="200"\} (\d+)`),
		regexp.MustCompile(`customs_messages_handled_total\{consumer="query-projection",outcome="ack"\} (\d+)`),
		regexp.MustCompile(`customs_message_handle_seconds_count\{consumer="query-projection",outcome="ack"\} (\d+)`),
	} {
		if v, ok := metricValue(text, re); !ok || v < 1 {
			t.Errorf("metric %s = %v (found %v)", re, v, ok)
		}
	}

	// Consumer state comes from the JetStream server at scrape time.
	eventually(t, "consumer gauges", func() error {
		mfs, err := reg.Gather()
		if err != nil {
			return err
		}
		for _, mf := range mfs {
			if mf.GetName() == "customs_consumer_delivered_stream_sequence" && mf.GetMetric()[0].GetGauge().GetValue() >= 1 {
				return nil
			}
		}
		return fmt.Errorf("no customs_consumer_delivered_stream_sequence >= 1 in %d families", len(mfs))
	})

	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200} {
		resp, err := http.Get(s.ingest + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s = %d, want %d", path, resp.StatusCode, want)
		}
	}
}
