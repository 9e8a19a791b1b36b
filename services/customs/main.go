// Command customs runs the whole of Customs in one process: an embedded
// NATS server with JetStream, a development registry (CNCF Distribution)
// whose notifications go to ingest, and every service. It is what `make run`
// starts.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/devregistry"
	"github.com/customs-dev/customs/pkg/grpcserver"
	"github.com/customs-dev/customs/pkg/lifecycle"
	"github.com/customs-dev/customs/pkg/metrics"
	"github.com/customs-dev/customs/pkg/servicemain"
	"github.com/customs-dev/customs/services/ingest/ingest"
	"github.com/customs-dev/customs/services/promotion/promotion"
	"github.com/customs-dev/customs/services/query/query"
	"github.com/customs-dev/customs/services/scanner/javadb"
	"github.com/customs-dev/customs/services/scanner/scanner"
	"github.com/customs-dev/customs/services/scanner/vulndb"
	"github.com/customs-dev/customs/services/signer/signer"
)

type config struct {
	dataDir          string
	registryListen   string
	registryDisabled bool
	registryLogLevel string
	common           servicemain.Flags
	ingest           ingest.ServiceConfig
	query            query.ServiceConfig
	scanner          scanner.ServiceConfig
	scannerDevDB     bool
	scannerDevJavaDB bool
	signer           signer.ServiceConfig
	promotion        promotion.ServiceConfig
	grpcSecurity     grpcserver.Config
}

func main() { servicemain.Main("customs", run) }

func run() error {
	var cfg config
	flags := flag.NewFlagSet("customs", flag.ExitOnError)
	flags.StringVar(&cfg.dataDir, "data-dir", lifecycle.EnvOr("CUSTOMS_DATA_DIR", ".customs-data"), "where NATS, the dev registry and generated secrets keep their data (env CUSTOMS_DATA_DIR)")
	flags.StringVar(&cfg.registryListen, "registry-listen", lifecycle.EnvOr("CUSTOMS_REGISTRY_LISTEN", "127.0.0.1:5000"), "development registry listen address (env CUSTOMS_REGISTRY_LISTEN)")
	flags.BoolVar(&cfg.registryDisabled, "no-registry", lifecycle.EnvBool("CUSTOMS_NO_REGISTRY", false), "do not start the development registry (env CUSTOMS_NO_REGISTRY)")
	flags.StringVar(&cfg.registryLogLevel, "registry-log-level", lifecycle.EnvOr("CUSTOMS_REGISTRY_LOG_LEVEL", "fatal"), "development registry log level: debug, info, warn, error or fatal (env CUSTOMS_REGISTRY_LOG_LEVEL)")
	cfg.common.Register(flags)
	cfg.ingest.RegisterFlags(flags)
	cfg.query.RegisterFlags(flags)
	cfg.scanner.RegisterFlags(flags)
	cfg.signer.RegisterFlags(flags)
	cfg.promotion.RegisterFlags(flags)
	cfg.grpcSecurity.RegisterFlags(flags)
	_ = flags.Parse(os.Args[1:])
	if !isFlagSet(flags, "nats-data-dir") && os.Getenv("CUSTOMS_NATS_DATA_DIR") == "" {
		cfg.common.Conn.DataDir = filepath.Join(cfg.dataDir, "nats")
	}

	var err error
	if cfg.ingest.DistributionToken == "" && cfg.ingest.DistributionTokenFile == "" && os.Getenv("CUSTOMS_DISTRIBUTION_TOKEN") == "" {
		// Zero-config: the dev registry and ingest share a generated token.
		tokenFile := filepath.Join(cfg.dataDir, "distribution-token")
		if cfg.ingest.DistributionToken, err = loadOrCreateSecret(tokenFile); err != nil {
			return err
		}
	}

	if !cfg.registryDisabled {
		// The services may pull from the dev registry, over plain HTTP,
		// under either name a client pushes with.
		_, port, err := net.SplitHostPort(cfg.registryListen)
		if err != nil {
			return fmt.Errorf("--registry-listen: %w", err)
		}
		dev := "127.0.0.1:" + port + ";plain-http,localhost:" + port + ";plain-http"
		cfg.ingest.Registries = joinSpec(cfg.ingest.Registries, dev)
		cfg.signer.Registries = joinSpec(cfg.signer.Registries, dev)
		cfg.promotion.Registries = joinSpec(cfg.promotion.Registries, dev)
		cfg.scanner.Registries = joinSpec(cfg.scanner.Registries, dev)
		// The development DB lives in the dev registry unless the user
		// points the scanner at a mirror.
		cfg.scannerDevDB = !isFlagSet(flags, "scanner-db-repository") && os.Getenv("CUSTOMS_SCANNER_DB_REPOSITORY") == ""
		cfg.scannerDevJavaDB = !isFlagSet(flags, "scanner-java-db-repository") && os.Getenv("CUSTOMS_SCANNER_JAVA_DB_REPOSITORY") == ""
		cfg.ingest.IgnoreRepositories = joinSpec(cfg.ingest.IgnoreRepositories, vulndb.DefaultRepository)
		cfg.ingest.IgnoreRepositories = joinSpec(cfg.ingest.IgnoreRepositories, javadb.DefaultRepository)
	}
	if !isFlagSet(flags, "scanner-cache-dir") && os.Getenv("CUSTOMS_SCANNER_CACHE_DIR") == "" {
		cfg.scanner.CacheDir = filepath.Join(cfg.dataDir, "scanner")
	}
	if _, err := os.Stat(devPolicy); err == nil && cfg.signer.PolicyFile == "" {
		// The tour's policy, when run from the repository (make run).
		cfg.signer.PolicyFile = devPolicy
	}

	rt, err := cfg.common.Start("runtime")
	if err != nil {
		return err
	}
	defer rt.Close()
	pub, err := signer.UseGeneratedKey(&cfg.signer, cfg.dataDir, rt.Log)
	if err != nil {
		return err
	}
	if cfg.promotion.PublicKeys == "" && pub != "" {
		// Promotion verifies what the signer signed, with the same key.
		cfg.promotion.PublicKeys = "signer=" + pub
	}
	return serve(rt.Ctx, cfg, rt.NATS, rt.Log)
}

func serve(ctx context.Context, cfg config, nc *backbone.Conn, log *slog.Logger) error {
	ingestLn, err := net.Listen("tcp", cfg.ingest.Listen)
	if err != nil {
		return fmt.Errorf("ingest listen: %w", err)
	}
	queryLn, err := net.Listen("tcp", cfg.query.Listen)
	if err != nil {
		return fmt.Errorf("query listen: %w", err)
	}
	g, ctx := errgroup.WithContext(ctx)

	// The dev registry comes first: the scanner downloads its
	// vulnerability DB from it, the way production uses a mirror.
	if !cfg.registryDisabled {
		regLn, err := net.Listen("tcp", cfg.registryListen)
		if err != nil {
			return fmt.Errorf("registry listen: %w", err)
		}
		reg, err := devregistry.New(ctx, devregistry.Config{
			StorageDir:   filepath.Join(cfg.dataDir, "registry"),
			WebhookURL:   "http://" + ingestLn.Addr().String() + "/webhooks/distribution",
			WebhookToken: cfg.ingest.DistributionToken,
			LogLevel:     cfg.registryLogLevel,
		})
		if err != nil {
			return err
		}
		g.Go(func() error { return lifecycle.ServeHTTP(ctx, regLn, reg, log) })
		log.Info("development registry listening", "addr", regLn.Addr().String(), "push_example", "crane append -f layer.tar -t "+regLn.Addr().String()+"/team/app:v1.2.3")
		if cfg.scannerDevDB {
			ref, digest, err := vulndb.Publish(ctx, regLn.Addr().String(), vulndb.DefaultRepository)
			if err != nil {
				return fmt.Errorf("publish the development vulnerability DB: %w", err)
			}
			cfg.scanner.DBRepositories = []string{ref}
			log.Info("development vulnerability DB published", "ref", ref, "digest", digest.String())
		}
		if cfg.scannerDevJavaDB {
			ref, err := javadb.Publish(ctx, regLn.Addr().String(), javadb.DefaultRepository, nil)
			if err != nil {
				return fmt.Errorf("publish the development Java DB: %w", err)
			}
			cfg.scanner.JavaDBRepositories = []string{ref}
			log.Info("development Java DB published", "ref", ref)
		}
	}

	// In one process, ingest's listener also serves /metrics, /healthz and
	// /readyz for everything.
	ingestPub := nc.Publisher()
	ingestSrv, err := ingest.NewService(cfg.ingest, ingestPub, nc.Ready, log.With("service", "ingest"))
	if err != nil {
		return err
	}
	// Zot can publish its events straight to this NATS (off unless
	// CUSTOMS_ZOT_NATS_SUBJECT is set); a stream keeps them for us.
	zot, err := ingest.StartZotNATS(ctx, cfg.ingest, nc.JS, cfg.common.Streams.Replicas, ingestPub, log.With("service", "ingest"))
	if err != nil {
		return err
	}
	if zot != nil {
		defer zot.Stop()
	}
	grpcOpts, err := cfg.grpcSecurity.ServerOptions()
	if err != nil {
		return err
	}
	cfg.query.Replicas = cfg.common.Streams.Replicas
	querySvc, err := query.NewService(ctx, cfg.query, nc.JS, log.With("service", "query"), grpcOpts...)
	if err != nil {
		return err
	}
	cfg.scanner.Replicas = cfg.common.Streams.Replicas
	scannerSvc, err := scanner.NewService(ctx, cfg.scanner, nc.JS, log) // it tags its own logs
	if err != nil {
		return err
	}
	cfg.signer.Replicas = cfg.common.Streams.Replicas
	signerSvc, err := signer.NewService(ctx, cfg.signer, nc.JS, log.With("service", "signer"), nil)
	if err != nil {
		return err
	}
	cfg.promotion.Replicas = cfg.common.Streams.Replicas
	promoSvc, err := promotion.NewService(ctx, cfg.promotion, nc.JS, nc.NC, log.With("service", "promotion"), nil)
	if err != nil {
		return err
	}
	if err := metrics.RegisterConsumers(prometheus.DefaultRegisterer, nc.JS, backbone.StreamArtifacts,
		query.ProjectionDurable, scanner.Durable, signer.Durable, promotion.ConsumerDurable); err != nil {
		return err
	}

	g.Go(func() error { return lifecycle.ServeHTTP(ctx, ingestLn, ingestSrv.Handler(), log) })
	g.Go(func() error { return querySvc.Run(ctx, queryLn) })
	g.Go(func() error { return scannerSvc.Run(ctx) })
	g.Go(func() error { return signerSvc.Run(ctx) })
	g.Go(func() error { return promoSvc.Run(ctx) })
	log.Info("customs is running",
		"ingest", "http://"+ingestLn.Addr().String()+"/webhooks/distribution",
		"grpc", queryLn.Addr().String(),
		"metrics", "http://"+ingestLn.Addr().String()+"/metrics",
		"nats", natsURL(nc))
	return g.Wait()
}

func natsURL(nc *backbone.Conn) string {
	if nc.Embedded != nil {
		return nc.Embedded.ClientURL()
	}
	return nc.NC.ConnectedUrlRedacted()
}

// loadOrCreateSecret reads a secret from path, or creates a random one there
// readable only by the owner.
func loadOrCreateSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(b) > 0 {
		return string(b), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	secret := hex.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(secret), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return secret, nil
}

// devPolicy is the signing policy `make run` uses: see the file.
const devPolicy = "deploy/policy/dev.yaml"

// joinSpec appends registry allow-list entries to a spec.
func joinSpec(spec, more string) string {
	if spec == "" {
		return more
	}
	return spec + "," + more
}

func isFlagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
