package query

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/lifecycle"
)

// ServiceConfig configures the query service.
type ServiceConfig struct {
	Listen string
	// AdminListen serves /metrics, /healthz and /readyz when the query
	// service runs on its own.
	AdminListen string
	// Rebuild drops the projection and replays the whole stream at start.
	Rebuild bool
	// Replicas of the KV bucket; match the stream's.
	Replicas int
	// CommandTimeout bounds Promote and Rollback; 0 means
	// DefaultCommandTimeout.
	CommandTimeout time.Duration
}

// RegisterFlags adds the query flags, each defaulting to its environment
// variable.
func (c *ServiceConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "grpc-listen", lifecycle.EnvOr("CUSTOMS_GRPC_LISTEN", "127.0.0.1:9090"), "gRPC listen address (env CUSTOMS_GRPC_LISTEN)")
	fs.StringVar(&c.AdminListen, "admin-listen", lifecycle.EnvOr("CUSTOMS_ADMIN_LISTEN", "127.0.0.1:9091"), "HTTP address for /metrics, /healthz and /readyz (env CUSTOMS_ADMIN_LISTEN)")
	fs.BoolVar(&c.Rebuild, "rebuild", lifecycle.EnvBool("CUSTOMS_QUERY_REBUILD", false), "drop the projection and rebuild it by replaying the ARTIFACTS stream (env CUSTOMS_QUERY_REBUILD)")
}

// Service is the query service: the projection consumer, the read model and
// the gRPC server.
type Service struct {
	cfg        ServiceConfig
	js         jetstream.JetStream
	log        *slog.Logger
	kv         jetstream.KeyValue
	model      *ReadModel
	projection *backbone.Consumer
	envs       *EnvironmentView
	grpc       *grpc.Server
	health     *health.Server
}

// NewService prepares the bucket and the consumer. opts are added to the
// gRPC server (interceptors, credentials).
func NewService(ctx context.Context, cfg ServiceConfig, js jetstream.JetStream, log *slog.Logger, opts ...grpc.ServerOption) (*Service, error) {
	if cfg.Listen == "" {
		return nil, errors.New("query: listen address is required")
	}
	kv, created, err := EnsureBucket(ctx, js, cfg.Replicas)
	if err != nil {
		return nil, err
	}
	if cfg.Rebuild && !created {
		log.Warn("rebuilding the projection from the stream")
		if err := js.DeleteKeyValue(ctx, BucketArtifacts); err != nil {
			return nil, fmt.Errorf("drop bucket for rebuild: %w", err)
		}
		if kv, _, err = EnsureBucket(ctx, js, cfg.Replicas); err != nil {
			return nil, err
		}
		created = true
	}
	if created {
		// A new bucket means an empty projection: replay from the start.
		if err := ResetConsumer(ctx, js); err != nil {
			return nil, err
		}
	}
	reports, err := backbone.EnsureReportStore(ctx, js, cfg.Replicas)
	if err != nil {
		return nil, err
	}
	proj := NewProjection(kv, log.With("component", "projection"))
	cons, err := backbone.NewConsumer(js, backbone.ConsumerConfig{
		Durable:        ProjectionDurable,
		FilterSubjects: []string{backbone.SubjectAll},
		// One at a time keeps each record's updates in stream order.
		Concurrency: 1,
		Logger:      log.With("component", "projection"),
	}, proj.Handle)
	if err != nil {
		return nil, err
	}
	model := NewReadModel(log.With("component", "readmodel"))
	gs := grpc.NewServer(opts...)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	hs.SetServingStatus(customsv1.ArtifactService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	envs := NewEnvironmentView(log.With("component", "environments"))
	srv := NewServer(model, kv, reports).WithPromotions(envs, js.Conn(), js, cfg.CommandTimeout)
	customsv1.RegisterArtifactServiceServer(gs, srv)
	reflection.Register(gs)
	return &Service{cfg: cfg, js: js, log: log, kv: kv, model: model, projection: cons, envs: envs, grpc: gs, health: hs}, nil
}

// Synced reports whether the read model has loaded the projection; the
// service is ready once it has.
func (s *Service) Synced(context.Context) error {
	select {
	case <-s.model.Synced():
		return nil
	default:
		return errors.New("read model is still loading the projection")
	}
}

// ReadModel exposes the read model, for readiness checks and tests.
func (s *Service) ReadModel() *ReadModel { return s.model }

// Run serves on ln until ctx ends.
func (s *Service) Run(ctx context.Context, ln net.Listener) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.projection.Run(ctx) })
	g.Go(func() error { return s.model.Run(ctx, s.kv) })
	g.Go(func() error { return s.envs.Run(ctx, s.js) })
	g.Go(func() error {
		select {
		case <-s.model.Synced():
			s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			s.health.SetServingStatus(customsv1.ArtifactService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
		case <-ctx.Done():
		}
		return nil
	})
	g.Go(func() error {
		s.log.Info("query gRPC listening", "addr", ln.Addr().String())
		if err := s.grpc.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("grpc serve: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		s.health.Shutdown()
		s.grpc.GracefulStop()
		return nil
	})
	return g.Wait()
}

// Environments exposes the environment view, for tests.
func (s *Service) Environments() *EnvironmentView { return s.envs }
