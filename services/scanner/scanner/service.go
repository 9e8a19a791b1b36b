package scanner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/aquasecurity/trivy/pkg/cache"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/lifecycle"
	"github.com/customs-dev/customs/pkg/telemetry"
	"github.com/customs-dev/customs/services/scanner/vulndb"
)

// Service is the scanner service.
type Service struct {
	cfg      ServiceConfig
	js       jetstream.JetStream
	log      *slog.Logger
	pub      *backbone.Publisher
	reports  jetstream.ObjectStore
	db       *dbManager
	engine   *engine
	closeC   func()
	consumer *backbone.Consumer
	runCtx   atomic.Pointer[context.Context]
	// javaDB refreshes the Java DB; nil without one.
	javaDB  func() error
	scans   atomic.Int64
	metrics *scanMetrics
}

// NewService prepares the layer cache, the DB (downloading it unless
// updates are skipped), the report store and the consumer. js must be
// connected; the streams must exist.
func NewService(ctx context.Context, cfg ServiceConfig, js jetstream.JetStream, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("service", "scanner")
	reports, err := backbone.EnsureReportStore(ctx, js, cfg.Replicas)
	if err != nil {
		return nil, err
	}
	db, err := newDBManager(cfg, log)
	if err != nil {
		return nil, err
	}
	if err := db.Start(ctx); err != nil {
		return nil, err
	}
	jars := len(cfg.JavaDBRepositories) > 0
	var javaDB func() error
	if jars {
		refs, opts, insecureTLS, err := dbReferences(cfg.AllowList, cfg.JavaDBRepositories)
		if err != nil {
			return nil, fmt.Errorf("scanner: Java DB repository: %w", err)
		}
		if insecureTLS {
			return nil, errors.New("scanner: the Java DB registry is marked insecure (TLS unverified), which Trivy's Java DB client cannot do: give it a verifiable certificate or plain HTTP")
		}
		javaDB = func() error { return vulndb.InitJavaDB(cfg.JavaDBCacheDir, refs, opts) }
		if err := javaDB(); err != nil {
			return nil, fmt.Errorf("scanner: %w (set CUSTOMS_SCANNER_JAVA_DB_REPOSITORY to a reachable mirror, or to none to skip JAR analysis)", err)
		}
		log.Info("Java DB ready: JAR, WAR and EAR files are analyzed", "repository", cfg.JavaDBRepositories, "dir", cfg.JavaDBCacheDir)
	} else {
		log.Warn("no Java DB repository: JAR, WAR and EAR files are not analyzed")
	}
	m, err := newScanMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("scanner: metrics: %w", err)
	}
	c, closeC, err := cache.New(cache.Options{Backend: cfg.CacheBackend, CacheDir: cfg.CacheDir})
	if err != nil {
		return nil, fmt.Errorf("scanner: layer cache %s: %w", cfg.CacheBackend, err)
	}
	s := &Service{
		cfg:     cfg,
		js:      js,
		log:     log,
		pub:     backbone.NewPublisher(js),
		reports: reports,
		db:      db,
		engine:  newEngine(cfg.AllowList, newOnceCache(c), jars),
		closeC:  closeC,
		metrics: m,
		javaDB:  javaDB,
	}
	s.consumer, err = backbone.NewConsumer(js, backbone.ConsumerConfig{
		Durable:        Durable,
		FilterSubjects: []string{backbone.SubjectPushed},
		Concurrency:    cfg.Concurrency,
		AckWait:        cfg.AckWait,
		// One more delivery than our own retry budget: the last attempt
		// publishes the failure event and acks, so the consumer never has
		// to dead-letter a retryable error silently.
		MaxDeliver: cfg.MaxDeliver + 1,
		Logger:     log,
	}, s.handle)
	if err != nil {
		closeC()
		return nil, err
	}
	return s, nil
}

// DB returns the vulnerability DB in use.
func (s *Service) DB() DBInfo { return s.db.Info() }

// Scans returns how many scans this process finished (results published).
func (s *Service) Scans() int64 { return s.scans.Load() }

// Run consumes artifact.pushed and keeps the DB fresh until ctx ends. Scans
// in flight are cut when ctx ends and their messages go back to the stream.
func (s *Service) Run(ctx context.Context) error {
	defer s.closeC()
	s.runCtx.Store(&ctx)
	go s.db.Run(ctx, s.cfg.DBUpdateInterval)
	if s.javaDB != nil && s.cfg.DBUpdateInterval > 0 && !s.cfg.SkipDBUpdate {
		go s.refreshJavaDB(ctx, s.cfg.DBUpdateInterval)
	}
	s.log.Info("scanner running", "concurrency", s.cfg.Concurrency, "registries", s.cfg.AllowList.Hosts(), "db", s.db.Info().Version)
	return s.consumer.Run(ctx)
}

// refreshJavaDB checks the Java DB every interval; Trivy's client
// downloads a new one only when the copy is due (three days).
func (s *Service) refreshJavaDB(ctx context.Context, interval time.Duration) {
	lifecycle.Every(ctx, interval, func(context.Context) {
		if err := s.javaDB(); err != nil {
			s.log.Warn("Java DB update failed; keeping the current one", "error", err)
		}
	})
}

// ScanOnce scans one artifact without the stream: for the benchmark and
// for tools.
func (s *Service) ScanOnce(ctx context.Context, a *customsv1.ArtifactRef) (*Result, error) {
	return s.engine.scan(ctx, a)
}

func (s *Service) handle(ctx context.Context, evt *customsv1.Event) error {
	a := evt.GetArtifact()
	if evt.GetPushed() == nil || a.GetDigest() == "" {
		return backbone.Terminalf("scanner: event %s is not a push with a digest", evt.GetId())
	}
	info, _ := backbone.Info(ctx)
	log := s.log.With("digest", a.GetDigest(), "repository", a.GetRepository(),
		"trace_id", trace.SpanContextFromContext(ctx).TraceID().String(), "deliveries", info.NumDelivered)

	// The consumer keeps handlers running through a shutdown; cut the scan
	// instead, so its message goes back to the stream for another scanner.
	scanCtx, cancel := context.WithTimeout(ctx, s.cfg.ScanTimeout)
	defer cancel()
	if rc := s.runCtx.Load(); rc != nil {
		stop := context.AfterFunc(*rc, cancel)
		defer stop()
	}
	stopBeat := s.heartbeat(scanCtx, info, log)
	defer stopBeat()

	start := time.Now()
	spanCtx, end := telemetry.Span(scanCtx, "trivy scan", telemetry.Digest(a.GetDigest()))
	res, err := s.engine.scan(spanCtx, a)
	end(&err)
	if err != nil {
		if rc := s.runCtx.Load(); rc != nil && (*rc).Err() != nil {
			return fmt.Errorf("scanner stopping: %w", err)
		}
		reason := err.Error()
		if errors.Is(scanCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			reason = fmt.Sprintf("scan timed out after %s: %v", s.cfg.ScanTimeout, err)
		}
		if !errors.Is(err, ErrNotScannable) && isRetryable(err) && info.NumDelivered < uint64(s.cfg.MaxDeliver) {
			s.metrics.results.WithLabelValues("retry").Inc()
			return err
		}
		log.Warn("scan failed", "error", err)
		if err := s.publishFailed(ctx, evt, reason); err != nil {
			return err
		}
		s.metrics.results.WithLabelValues("failed").Inc()
		return nil
	}
	db := s.db.Info()
	if err := s.store(ctx, a.GetDigest(), res); err != nil {
		return err
	}
	summary, findings, truncated := Summarize(res.Report, db, s.engine.version, start.UTC(), s.cfg.MaxFindings)
	out := &customsv1.Event{
		Id:            backbone.EventID("scanned", a.GetDigest(), db.Version, db.UpdatedAt.UTC().Format(time.RFC3339Nano)),
		Artifact:      a,
		OccurredAt:    timestamppb.Now(),
		CorrelationId: evt.GetCorrelationId(),
		Producer:      "scanner",
		Payload: &customsv1.Event_Scanned{Scanned: &customsv1.ArtifactScanned{
			Summary:           summary,
			Findings:          findings,
			FindingsTruncated: truncated,
			ReportObject:      backbone.ReportObject(a.GetDigest()),
			SbomObject:        backbone.SBOMObject(a.GetDigest()),
			// The signer's SLSA provenance and the promotion's tags need
			// what CI said about the build.
			Provenance: evt.GetPushed().GetProvenance(),
		}},
	}
	if _, err := s.pub.Publish(ctx, out); err != nil {
		return fmt.Errorf("publish scan result: %w", err)
	}
	s.scans.Add(1)
	s.metrics.results.WithLabelValues("scanned").Inc()
	s.metrics.duration.Observe(time.Since(start).Seconds())
	c := summary.GetCounts()
	log.Info("scanned", "critical", c.GetCritical(), "high", c.GetHigh(), "medium", c.GetMedium(), "low", c.GetLow(),
		"unknown", c.GetUnknown(), "packages", summary.GetPackageCount(), "took", time.Since(start))
	return nil
}

// store puts the full report and the SBOM in the object store before the
// event that names them is published.
func (s *Service) store(ctx context.Context, digest string, res *Result) error {
	for _, o := range []struct {
		name, mediaType string
		data            []byte
	}{
		{backbone.ReportObject(digest), backbone.MediaTypeTrivyJSON, res.JSON},
		{backbone.SBOMObject(digest), backbone.MediaTypeCycloneDX, res.SBOM},
	} {
		meta := jetstream.ObjectMeta{Name: o.name, Description: o.mediaType, Metadata: map[string]string{"media-type": o.mediaType, "digest": digest}}
		if _, err := s.reports.Put(ctx, meta, bytes.NewReader(o.data)); err != nil {
			return fmt.Errorf("store %s: %w", o.name, err)
		}
	}
	return nil
}

func (s *Service) publishFailed(ctx context.Context, evt *customsv1.Event, reason string) error {
	a := evt.GetArtifact()
	out := &customsv1.Event{
		Id:            backbone.EventID("scan-failed", a.GetDigest(), evt.GetId()),
		Artifact:      a,
		OccurredAt:    timestamppb.Now(),
		CorrelationId: evt.GetCorrelationId(),
		Producer:      "scanner",
		Payload:       &customsv1.Event_Failed{Failed: &customsv1.ArtifactFailed{Stage: customsv1.Stage_STAGE_SCAN, Reason: truncate(reason, 1024)}},
	}
	if _, err := s.pub.Publish(ctx, out); err != nil {
		return fmt.Errorf("publish scan failure: %w", err)
	}
	return nil
}

// heartbeat tells JetStream the scan is alive every third of the ack wait,
// so a slow scan is not handed to another scanner.
func (s *Service) heartbeat(ctx context.Context, info backbone.MessageInfo, log *slog.Logger) func() {
	if info.InProgress == nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(max(s.cfg.AckWait/3, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if err := info.InProgress(); err != nil {
					log.Debug("heartbeat failed", "error", err)
				}
			}
		}
	}()
	return func() { close(done) }
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
