package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/registries"
)

// Resolved is what the registry says about a manifest.
type Resolved struct {
	Digest    string
	MediaType string
	Size      int64
}

// Resolver asks the registry for the digest of a tag, or the media type of
// a digest. Errors wrap ErrRegistryNotAllowed, ErrUnresolvable or
// ErrRegistryUnavailable.
type Resolver interface {
	Resolve(ctx context.Context, a *customsv1.ArtifactRef) (Resolved, error)
}

// RegistryResolver resolves against the real registry, and only for
// registries on the allow-list: a webhook names the host, so without the
// list it could make ingest call anywhere (SSRF).
type RegistryResolver struct {
	Allow *registries.AllowList
}

var _ Resolver = (*RegistryResolver)(nil)

// Resolve implements Resolver with a HEAD on the manifest, falling back to
// a GET for registries that answer HEAD badly.
func (rr *RegistryResolver) Resolve(ctx context.Context, a *customsv1.ArtifactRef) (Resolved, error) {
	ref := a.GetRegistry() + "/" + a.GetRepository()
	if a.GetDigest() != "" {
		ref += "@" + a.GetDigest()
	} else {
		ref += ":" + a.GetTag()
	}
	n, reg, err := rr.Allow.Reference(ref)
	if err != nil {
		if errors.Is(err, registries.ErrNotAllowed) {
			return Resolved{}, fmt.Errorf("%w: %w", ErrRegistryNotAllowed, err)
		}
		return Resolved{}, fmt.Errorf("%w: %w", ErrUnresolvable, err)
	}
	opts, err := rr.Allow.RemoteOptions(reg)
	if err != nil {
		return Resolved{}, fmt.Errorf("%w: %s: %w", ErrRegistryUnavailable, reg.Host, err)
	}
	opts = append(opts, remote.WithContext(ctx))
	desc, err := remote.Head(n, opts...)
	if err != nil && !isNotFound(err) && ctx.Err() == nil {
		var full *remote.Descriptor
		if full, err = remote.Get(n, opts...); err == nil {
			desc = &full.Descriptor
		}
	}
	if err != nil {
		if isNotFound(err) {
			return Resolved{}, fmt.Errorf("%w: %s", ErrUnresolvable, ref)
		}
		return Resolved{}, fmt.Errorf("%w: %s: %w", ErrRegistryUnavailable, ref, err)
	}
	return Resolved{Digest: desc.Digest.String(), MediaType: string(desc.MediaType), Size: desc.Size}, nil
}

func isNotFound(err error) bool {
	var te *transport.Error
	if errors.As(err, &te) {
		if te.StatusCode == http.StatusNotFound {
			return true
		}
		for _, d := range te.Errors {
			if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
				return true
			}
		}
	}
	return false
}
