package query

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/artifactref"
	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/grpcserver"
)

// DefaultCommandTimeout bounds a Promote or Rollback: the promotion service
// copies the image before it answers.
const DefaultCommandTimeout = 2 * time.Minute

// promotionBackend is what the promotion RPCs need beyond the read model.
type promotionBackend struct {
	envs    *EnvironmentView
	nc      *nats.Conn
	pub     *backbone.Publisher
	timeout time.Duration
}

// WithPromotions enables GetEnvironment, ListPromotions, Promote, Rollback
// and RequestRescan. envs is the environment view, nc carries commands to
// the promotion service and js re-publishes rescans.
func (s *Server) WithPromotions(envs *EnvironmentView, nc *nats.Conn, js jetstream.JetStream, timeout time.Duration) *Server {
	if timeout <= 0 {
		timeout = DefaultCommandTimeout
	}
	s.promo = &promotionBackend{envs: envs, nc: nc, pub: backbone.NewPublisher(js), timeout: timeout}
	return s
}

func (s *Server) promotions() (*promotionBackend, error) {
	if s.promo == nil {
		return nil, status.Error(codes.Unimplemented, "promotions are not enabled on this server")
	}
	return s.promo, nil
}

// GetEnvironment implements ArtifactService.
func (s *Server) GetEnvironment(_ context.Context, req *customsv1.GetEnvironmentRequest) (*customsv1.GetEnvironmentResponse, error) {
	pb, err := s.promotions()
	if err != nil {
		return nil, err
	}
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	view := req.GetView()
	switch view {
	case customsv1.EnvironmentView_ENVIRONMENT_VIEW_UNSPECIFIED:
		view = customsv1.EnvironmentView_ENVIRONMENT_VIEW_BASIC
	case customsv1.EnvironmentView_ENVIRONMENT_VIEW_BASIC, customsv1.EnvironmentView_ENVIRONMENT_VIEW_FULL:
	default:
		return nil, status.Errorf(codes.InvalidArgument, "unknown view %d: use ENVIRONMENT_VIEW_BASIC or ENVIRONMENT_VIEW_FULL", view)
	}
	deps, ok := pb.envs.Environment(req.GetName(), s.model, view)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "nothing has been promoted to environment %q", req.GetName())
	}
	return s.environmentResponse(req.GetName(), view, deps), nil
}

// environmentResponse returns the same frozen response for as long as the
// environment view returns the same deployments, so the gRPC layer encodes
// a whole environment once instead of on every call.
func (s *Server) environmentResponse(name string, view customsv1.EnvironmentView, deps []*customsv1.Deployment) *customsv1.GetEnvironmentResponse {
	type cached struct {
		first *customsv1.Deployment
		n     int
		resp  *customsv1.GetEnvironmentResponse
	}
	var first *customsv1.Deployment
	if len(deps) > 0 {
		first = deps[0]
	}
	key := envResponseKey{name: name, view: view}
	if c, ok := s.envResponses.Load(key); ok {
		if c := c.(cached); c.first == first && c.n == len(deps) {
			return c.resp
		}
	}
	resp := grpcserver.Freeze(&customsv1.GetEnvironmentResponse{Environment: &customsv1.Environment{Name: name, Deployments: deps}})
	s.envResponses.Store(key, cached{first: first, n: len(deps), resp: resp})
	return resp
}

type envResponseKey struct {
	name string
	view customsv1.EnvironmentView
}

// ListPromotions implements ArtifactService.
func (s *Server) ListPromotions(_ context.Context, req *customsv1.ListPromotionsRequest) (*customsv1.ListPromotionsResponse, error) {
	pb, err := s.promotions()
	if err != nil {
		return nil, err
	}
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	if req.GetDigest() != "" {
		if err := artifactref.ValidateDigest(req.GetDigest()); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
	}
	f := PromotionFilter{Environment: req.GetEnvironment(), Repository: req.GetRepository(), Digest: req.GetDigest()}
	if tok := req.GetPageToken(); tok != "" {
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		seq, perr := strconv.ParseUint(string(raw), 10, 64)
		if err != nil || perr != nil || seq == 0 {
			return nil, status.Error(codes.InvalidArgument, "malformed page_token")
		}
		f.Before = seq
	}
	page, more := pb.envs.History(f, size)
	resp := &customsv1.ListPromotionsResponse{Promotions: page}
	if more && len(page) > 0 {
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatUint(page[len(page)-1].GetStreamSequence(), 10)))
	}
	return resp, nil
}

// callerActor is who a manual promotion or rollback is recorded as. Under
// mutual TLS it is the client certificate's identity, and a request that
// names someone else is refused; otherwise it is the actor the request
// names, which is required.
func callerActor(ctx context.Context, requested string) (string, error) {
	if id, ok := grpcserver.ClientIdentity(ctx); ok {
		if requested != "" && requested != id {
			return "", status.Errorf(codes.PermissionDenied, "actor %q is not the caller: the client certificate says %q", requested, id)
		}
		return id, nil
	}
	if requested == "" {
		return "", status.Error(codes.InvalidArgument, "environment, actor and reason are required")
	}
	return requested, nil
}

// Promote implements ArtifactService.
func (s *Server) Promote(ctx context.Context, req *customsv1.PromoteRequest) (*customsv1.PromoteResponse, error) {
	pb, err := s.promotions()
	if err != nil {
		return nil, err
	}
	actor, err := callerActor(ctx, req.GetActor())
	if err != nil {
		return nil, err
	}
	if req.GetEnvironment() == "" || req.GetReason() == "" {
		return nil, status.Error(codes.InvalidArgument, "environment, actor and reason are required")
	}
	var digest string
	switch sel := req.GetSelector().(type) {
	case *customsv1.PromoteRequest_Digest:
		if err := artifactref.ValidateDigest(sel.Digest); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		digest = sel.Digest
	case *customsv1.PromoteRequest_Reference:
		got, err := s.GetArtifact(ctx, &customsv1.GetArtifactRequest{Selector: &customsv1.GetArtifactRequest_Reference{Reference: sel.Reference}})
		if err != nil {
			return nil, err
		}
		digest = got.GetArtifact().GetDigest()
	default:
		return nil, status.Error(codes.InvalidArgument, "set digest or reference")
	}
	res, err := pb.command(ctx, &customsv1.PromotionCommand{
		Kind: customsv1.PromotionCommandKind_PROMOTION_COMMAND_KIND_PROMOTE, Digest: digest,
		Environment: req.GetEnvironment(), Actor: actor, Reason: req.GetReason(),
	})
	if err != nil {
		return nil, err
	}
	return &customsv1.PromoteResponse{Promotion: res.GetPromoted().GetPromoted(), Digest: digest, AlreadyPromoted: res.GetAlreadyPromoted()}, nil
}

// Rollback implements ArtifactService.
func (s *Server) Rollback(ctx context.Context, req *customsv1.RollbackRequest) (*customsv1.RollbackResponse, error) {
	pb, err := s.promotions()
	if err != nil {
		return nil, err
	}
	actor, err := callerActor(ctx, req.GetActor())
	if err != nil {
		return nil, err
	}
	if req.GetEnvironment() == "" || req.GetApplication() == "" || req.GetReason() == "" {
		return nil, status.Error(codes.InvalidArgument, "environment, application, actor and reason are required")
	}
	if req.GetDigest() != "" {
		if err := artifactref.ValidateDigest(req.GetDigest()); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
	}
	res, err := pb.command(ctx, &customsv1.PromotionCommand{
		Kind: customsv1.PromotionCommandKind_PROMOTION_COMMAND_KIND_ROLLBACK, Digest: req.GetDigest(),
		Environment: req.GetEnvironment(), Application: req.GetApplication(), Actor: actor, Reason: req.GetReason(),
	})
	if err != nil {
		return nil, err
	}
	return &customsv1.RollbackResponse{Promotion: res.GetPromoted().GetPromoted(), Digest: res.GetPromoted().GetArtifact().GetDigest()}, nil
}

// command sends cmd to the promotion service and maps a refusal to a gRPC
// status carrying the reason.
func (pb *promotionBackend) command(ctx context.Context, cmd *customsv1.PromotionCommand) (*customsv1.PromotionCommandResult, error) {
	cmd.RequestId = uuid.NewString()
	data, err := proto.Marshal(cmd)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, pb.timeout)
	defer cancel()
	msg, err := pb.nc.RequestWithContext(ctx, backbone.SubjectPromotionCommand, data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, status.Error(codes.Unavailable, "no promotion service is running")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return nil, status.Error(codes.DeadlineExceeded, "the promotion service did not answer in time; the promotion may still complete")
	case errors.Is(err, context.Canceled):
		return nil, status.Error(codes.Canceled, "request canceled")
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "promotion command: %v", err)
	}
	var res customsv1.PromotionCommandResult
	if err := proto.Unmarshal(msg.Data, &res); err != nil {
		return nil, status.Errorf(codes.Internal, "undecodable promotion reply: %v", err)
	}
	msgText := res.GetReason()
	if len(res.GetDetails()) > 0 {
		msgText = fmt.Sprintf("%s (%s)", msgText, joinDetails(res.GetDetails()))
	}
	switch res.GetStatus() {
	case customsv1.PromotionCommandStatus_PROMOTION_COMMAND_STATUS_ACCEPTED:
		return &res, nil
	case customsv1.PromotionCommandStatus_PROMOTION_COMMAND_STATUS_REFUSED:
		return nil, status.Error(codes.FailedPrecondition, msgText)
	case customsv1.PromotionCommandStatus_PROMOTION_COMMAND_STATUS_INVALID:
		return nil, status.Error(codes.InvalidArgument, msgText)
	case customsv1.PromotionCommandStatus_PROMOTION_COMMAND_STATUS_NOT_FOUND:
		return nil, status.Error(codes.NotFound, msgText)
	case customsv1.PromotionCommandStatus_PROMOTION_COMMAND_STATUS_FAILED:
		return nil, status.Error(codes.Unavailable, msgText)
	}
	return nil, status.Errorf(codes.Internal, "promotion reply with status %v: %s", res.GetStatus(), msgText)
}

func joinDetails(d []string) string {
	out := ""
	for i, s := range d {
		if i > 0 {
			out += "; "
		}
		out += s
	}
	return out
}

// RequestRescan implements ArtifactService: it re-publishes the digest's
// latest artifact.pushed with a new id and source "rescan", so the scanner
// takes it as a new push.
func (s *Server) RequestRescan(ctx context.Context, req *customsv1.RequestRescanRequest) (*customsv1.RequestRescanResponse, error) {
	pb, err := s.promotions()
	if err != nil {
		return nil, err
	}
	if err := artifactref.ValidateDigest(req.GetDigest()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rec, err := Record(ctx, s.kv, req.GetDigest())
	if err != nil {
		return nil, storeError(err, req.GetDigest())
	}
	var pushed *customsv1.Event
	for _, h := range rec.GetHistory() {
		if h.GetEvent().GetPushed() != nil {
			pushed = h.GetEvent()
		}
	}
	if pushed == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "no push of %s is on record to rescan", req.GetDigest())
	}
	requestID := req.GetRequestId()
	if requestID == "" {
		requestID = uuid.NewString()
	}
	evt := proto.CloneOf(pushed)
	evt.Id = backbone.EventID("rescan", req.GetDigest(), requestID)
	evt.OccurredAt = timestamppb.Now()
	evt.Producer = "query"
	evt.GetPushed().Source = "rescan"
	evt.GetPushed().SourceEventId = requestID
	if _, err := pb.pub.Publish(ctx, evt); err != nil {
		if errors.Is(err, backbone.ErrUnavailable) {
			return nil, status.Error(codes.Unavailable, err.Error())
		}
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &customsv1.RequestRescanResponse{EventId: evt.GetId()}, nil
}
