// Package telemetry sets up tracing and logging the same way in every
// Customs service.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/customs-dev/customs/pkg/backbone"
)

// Options for Setup. Exporters are chosen by the standard OTEL_* variables;
// these only add what the environment cannot say.
type Options struct {
	ServiceName string
	// ExtraProcessors are added to the tracer provider, e.g. an in-memory
	// exporter in tests.
	ExtraProcessors []sdktrace.SpanProcessor
}

// Setup installs a tracer provider and the W3C propagator globally. Trace
// ids are always generated, so every artifact has one even when nothing is
// exported. OTEL_TRACES_EXPORTER picks "none" (default), "otlp" or
// "console"; OTEL_EXPORTER_OTLP_PROTOCOL picks "grpc" (default) or
// "http/protobuf"; the OTLP exporters read their endpoint and headers from
// the standard variables themselves.
func Setup(ctx context.Context, opts Options) (shutdown func(context.Context) error, err error) {
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(opts.ServiceName)))
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	for _, p := range opts.ExtraProcessors {
		tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(p))
	}
	exporterName := strings.TrimSpace(strings.ToLower(os.Getenv("OTEL_TRACES_EXPORTER")))
	switch exporterName {
	case "", "none":
	case "otlp":
		var exp sdktrace.SpanExporter
		switch proto := strings.ToLower(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") + os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")); {
		case proto == "" || strings.HasPrefix(proto, "grpc"):
			exp, err = otlptracegrpc.New(ctx)
		case strings.HasPrefix(proto, "http"):
			exp, err = otlptracehttp.New(ctx)
		default:
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: want grpc or http/protobuf", proto)
		}
		if err != nil {
			return nil, fmt.Errorf("otlp trace exporter: %w", err)
		}
		tpOpts = append(tpOpts, sdktrace.WithBatcher(exp))
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: want none or otlp", exporterName)
	}
	tp := sdktrace.NewTracerProvider(tpOpts...)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(backbone.Propagator())
	return tp.Shutdown, nil
}

// NewLogger returns a JSON or text slog logger at the given level
// ("debug", "info", "warn", "error").
func NewLogger(format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	default:
		return nil, errors.New("log format must be text or json")
	}
}

// Span starts an internal span named name under ctx. Call end with a
// pointer to the operation's error so failures are recorded on the span:
//
//	ctx, end := telemetry.Span(ctx, "cosign sign")
//	defer end(&err)
func Span(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, func(*error)) {
	ctx, span := otel.Tracer("github.com/customs-dev/customs").Start(ctx, name, trace.WithAttributes(attrs...))
	return ctx, func(errp *error) {
		if errp != nil && *errp != nil {
			span.RecordError(*errp)
			span.SetStatus(codes.Error, (*errp).Error())
		}
		span.End()
	}
}

// Digest is the span attribute for an artifact digest.
func Digest(d string) attribute.KeyValue { return attribute.String("customs.artifact.digest", d) }
