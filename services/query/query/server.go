package query

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/artifactref"
	"github.com/customs-dev/customs/pkg/backbone"
)

// Server implements customsv1.ArtifactServiceServer. Errors are mapped to
// gRPC codes here, at the edge, and nowhere else.
type Server struct {
	customsv1.UnimplementedArtifactServiceServer
	model   *ReadModel
	kv      jetstream.KeyValue
	reports jetstream.ObjectStore
	// promo is set by WithPromotions.
	promo *promotionBackend
	// envResponses caches the frozen GetEnvironment response per
	// environment name and view.
	envResponses sync.Map
}

// NewServer serves reads from model, histories from kv, and reports and
// SBOMs from the reports object store.
func NewServer(model *ReadModel, kv jetstream.KeyValue, reports jetstream.ObjectStore) *Server {
	return &Server{model: model, kv: kv, reports: reports}
}

var _ customsv1.ArtifactServiceServer = (*Server)(nil)

// GetArtifact implements ArtifactService.
func (s *Server) GetArtifact(_ context.Context, req *customsv1.GetArtifactRequest) (*customsv1.GetArtifactResponse, error) {
	var digest string
	switch sel := req.GetSelector().(type) {
	case *customsv1.GetArtifactRequest_Digest:
		if err := artifactref.ValidateDigest(sel.Digest); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		digest = sel.Digest
	case *customsv1.GetArtifactRequest_Reference:
		ref, err := artifactref.Parse(sel.Reference)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		if ref.Digest != "" {
			digest = ref.Digest
			break
		}
		digest, err = s.model.Resolve(ref.Registry, ref.Repository, ref.Tag)
		if err != nil {
			var amb *ErrAmbiguous
			if errors.As(err, &amb) {
				return nil, status.Error(codes.FailedPrecondition, err.Error())
			}
			return nil, status.Errorf(codes.NotFound, "no artifact is tagged %s", sel.Reference)
		}
	default:
		return nil, status.Error(codes.InvalidArgument, "set digest or reference")
	}
	a, ok := s.model.Get(digest)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no artifact with digest %s", digest)
	}
	return &customsv1.GetArtifactResponse{Artifact: a}, nil
}

const (
	defaultPageSize = 50
	maxPageSize     = 500
)

// pageSize is a request's page size: 0 means defaultPageSize, and more
// than maxPageSize is cut to it.
func pageSize(requested int32) (int, error) {
	switch {
	case requested < 0:
		return 0, status.Error(codes.InvalidArgument, "page_size must not be negative")
	case requested == 0:
		return defaultPageSize, nil
	}
	return min(int(requested), maxPageSize), nil
}

// ListArtifacts implements ArtifactService.
func (s *Server) ListArtifacts(_ context.Context, req *customsv1.ListArtifactsRequest) (*customsv1.ListArtifactsResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	if req.GetRepository() != "" {
		if err := artifactref.ValidateRepository(req.GetRepository()); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
	}
	if _, ok := customsv1.ArtifactState_name[int32(req.GetState())]; !ok {
		return nil, status.Errorf(codes.InvalidArgument, "unknown state %d", req.GetState())
	}
	var after *customsv1.Artifact
	if tok := req.GetPageToken(); tok != "" {
		var err error
		if after, err = decodePageToken(tok); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
	}
	all := s.model.Snapshot(listFilter(req.GetRepository(), req.GetState()))
	start := 0
	if after != nil {
		for start < len(all) && compareNewestFirst(all[start], after) <= 0 {
			start++
		}
	}
	end := min(start+size, len(all))
	resp := &customsv1.ListArtifactsResponse{Artifacts: all[start:end]}
	if end < len(all) {
		resp.NextPageToken = encodePageToken(all[end-1])
	}
	return resp, nil
}

func listFilter(repository string, state customsv1.ArtifactState) func(*customsv1.Artifact) bool {
	return func(a *customsv1.Artifact) bool {
		if state != customsv1.ArtifactState_ARTIFACT_STATE_UNSPECIFIED && a.GetState() != state {
			return false
		}
		return repository == "" || inRepository(a, repository)
	}
}

func inRepository(a *customsv1.Artifact, repository string) bool {
	for _, l := range a.GetLocations() {
		if l.GetRepository() == repository {
			return true
		}
	}
	return false
}

// A page token is the sort key of the last artifact returned, so pages stay
// stable while new artifacts arrive.
func encodePageToken(a *customsv1.Artifact) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d|%s", a.GetFirstSeenAt().AsTime().UnixNano(), a.GetDigest()))
}

func decodePageToken(tok string) (*customsv1.Artifact, error) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return nil, errors.New("malformed page_token")
	}
	ts, digest, ok := strings.Cut(string(raw), "|")
	var nanos int64
	if _, err := fmt.Sscanf(ts, "%d", &nanos); !ok || err != nil || artifactref.ValidateDigest(digest) != nil {
		return nil, errors.New("malformed page_token")
	}
	return &customsv1.Artifact{Digest: digest, FirstSeenAt: timestampFromNanos(nanos)}, nil
}

// WatchArtifacts implements ArtifactService.
func (s *Server) WatchArtifacts(req *customsv1.WatchArtifactsRequest, stream customsv1.ArtifactService_WatchArtifactsServer) error {
	if req.GetRepository() != "" {
		if err := artifactref.ValidateRepository(req.GetRepository()); err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
	}
	filter := listFilter(req.GetRepository(), customsv1.ArtifactState_ARTIFACT_STATE_UNSPECIFIED)
	// Subscribe before the snapshot so no change falls between the two.
	updates, dropped, cancel := s.model.Subscribe(filter)
	defer cancel()
	if req.GetIncludeInitial() {
		for _, a := range s.model.Snapshot(filter) {
			if err := stream.Send(&customsv1.WatchArtifactsResponse{Artifact: a}); err != nil {
				return err
			}
		}
	}
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case <-dropped:
			return status.Error(codes.ResourceExhausted, "watch fell too far behind; reconnect with include_initial")
		case a := <-updates:
			if err := stream.Send(&customsv1.WatchArtifactsResponse{Artifact: a}); err != nil {
				return err
			}
		}
	}
}

// GetArtifactHistory implements ArtifactService.
func (s *Server) GetArtifactHistory(ctx context.Context, req *customsv1.GetArtifactHistoryRequest) (*customsv1.GetArtifactHistoryResponse, error) {
	if err := artifactref.ValidateDigest(req.GetDigest()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rec, err := Record(ctx, s.kv, req.GetDigest())
	if err != nil {
		return nil, storeError(err, req.GetDigest())
	}
	return &customsv1.GetArtifactHistoryResponse{
		Digest:    req.GetDigest(),
		Entries:   rec.GetHistory(),
		Truncated: rec.GetHistoryTruncated(),
	}, nil
}

func timestampFromNanos(n int64) *timestamppb.Timestamp { return timestamppb.New(time.Unix(0, n)) }

// GetVulnerabilityReport implements ArtifactService.
func (s *Server) GetVulnerabilityReport(ctx context.Context, req *customsv1.GetVulnerabilityReportRequest) (*customsv1.GetVulnerabilityReportResponse, error) {
	if err := artifactref.ValidateDigest(req.GetDigest()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rec, err := Record(ctx, s.kv, req.GetDigest())
	if err != nil {
		return nil, storeError(err, req.GetDigest())
	}
	var scanned *customsv1.ArtifactScanned
	for _, h := range rec.GetHistory() {
		if sc := h.GetEvent().GetScanned(); sc != nil {
			scanned = sc
		}
	}
	if scanned == nil {
		return nil, status.Errorf(codes.NotFound, "artifact %s has not been scanned yet", req.GetDigest())
	}
	report, err := s.object(ctx, backbone.ReportObject(req.GetDigest()))
	if err != nil {
		return nil, err
	}
	return &customsv1.GetVulnerabilityReportResponse{
		Digest:     req.GetDigest(),
		Summary:    scanned.GetSummary(),
		Findings:   scanned.GetFindings(),
		ReportJson: report,
	}, nil
}

// GetSBOM implements ArtifactService.
func (s *Server) GetSBOM(ctx context.Context, req *customsv1.GetSBOMRequest) (*customsv1.GetSBOMResponse, error) {
	if err := artifactref.ValidateDigest(req.GetDigest()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sbom, err := s.object(ctx, backbone.SBOMObject(req.GetDigest()))
	if err != nil {
		return nil, err
	}
	return &customsv1.GetSBOMResponse{Digest: req.GetDigest(), MediaType: backbone.MediaTypeCycloneDX, Sbom: sbom}, nil
}

func (s *Server) object(ctx context.Context, name string) ([]byte, error) {
	if s.reports == nil {
		return nil, status.Error(codes.Unavailable, "report store is not configured")
	}
	b, err := s.reports.GetBytes(ctx, name)
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound):
		return nil, status.Errorf(codes.NotFound, "no stored %s", name)
	case err != nil:
		return nil, storeError(err, name)
	}
	return b, nil
}

// storeError maps a projection or object store error to a gRPC status.
func storeError(err error, what string) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return status.Errorf(codes.NotFound, "no artifact with digest %s", what)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, jetstream.ErrNoHeartbeat):
		return status.Error(codes.Unavailable, "projection store did not answer in time")
	}
	return status.Error(codes.Internal, err.Error())
}
