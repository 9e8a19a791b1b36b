package vulndb

import (
	"context"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Media types and annotation of a Trivy DB artifact, as Trivy's DB client
// (pkg/db, pkg/oci) expects them: one layer, named by its title annotation.
const (
	MediaTypeConfig = "application/vnd.aquasec.trivy.config.v1+json"
	MediaTypeLayer  = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"
	AnnotationTitle = "org.opencontainers.image.title"
	LayerTitle      = "db.tar.gz"
)

// DefaultRepository is the repository, in the dev registry, that `make run`
// publishes the project's DB to and the scanner downloads it from; the tag
// is the DB schema version, as for ghcr.io/aquasecurity/trivy-db:2.
const (
	DefaultRepository = "customs/trivy-db"
	DefaultTag        = "2"
)

// Image wraps a DB archive (see Archive) as an OCI artifact.
func Image(archive []byte) (v1.Image, error) {
	return ArtifactImage(archive, MediaTypeLayer, LayerTitle)
}

// ArtifactImage wraps an archive as a Trivy DB artifact: Trivy's config
// media type and one layer of layerMediaType, named title.
func ArtifactImage(archive []byte, layerMediaType, title string) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, MediaTypeConfig)
	img, err := mutate.Append(img, mutate.Addendum{
		Layer:       static.NewLayer(archive, types.MediaType(layerMediaType)),
		Annotations: map[string]string{AnnotationTitle: title},
		MediaType:   types.MediaType(layerMediaType),
	})
	if err != nil {
		return nil, fmt.Errorf("DB artifact: %w", err)
	}
	return img, nil
}

type publishOptions struct {
	advisories *Advisories
	tag        string
	remote     []remote.Option
	nameOpts   []name.Option
}

// Option configures Publish.
type Option func(*publishOptions)

// WithAdvisories publishes a DB built from a instead of Default().
func WithAdvisories(a *Advisories) Option { return func(o *publishOptions) { o.advisories = a } }

// WithTag sets the tag (default DefaultTag).
func WithTag(tag string) Option { return func(o *publishOptions) { o.tag = tag } }

// WithRemoteOptions adds go-containerregistry options (auth, transport).
func WithRemoteOptions(opts ...remote.Option) Option {
	return func(o *publishOptions) { o.remote = append(o.remote, opts...) }
}

// WithPlainHTTP talks HTTP to the registry. Loopback registries get it
// anyway.
func WithPlainHTTP() Option {
	return func(o *publishOptions) { o.nameOpts = append(o.nameOpts, name.Insecure) }
}

// Publish builds the DB and pushes it to registryHost/repo:tag. It returns
// the reference to pass to the scanner's DB repository setting (or to
// `trivy --db-repository`) and the artifact's digest.
func Publish(ctx context.Context, registryHost, repo string, opts ...Option) (ref string, digest v1.Hash, err error) {
	o := publishOptions{advisories: Default(), tag: DefaultTag}
	for _, opt := range opts {
		opt(&o)
	}
	tag, err := name.NewTag(registryHost+"/"+repo+":"+o.tag, o.nameOpts...)
	if err != nil {
		return "", v1.Hash{}, fmt.Errorf("publish DB: %w", err)
	}
	dir, err := os.MkdirTemp("", "customs-vulndb-")
	if err != nil {
		return "", v1.Hash{}, fmt.Errorf("publish DB: %w", err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if _, err := Build(dir, o.advisories); err != nil {
		return "", v1.Hash{}, err
	}
	archive, err := Archive(dir)
	if err != nil {
		return "", v1.Hash{}, err
	}
	img, err := Image(archive)
	if err != nil {
		return "", v1.Hash{}, err
	}
	if err := remote.Write(tag, img, append([]remote.Option{remote.WithContext(ctx)}, o.remote...)...); err != nil {
		return "", v1.Hash{}, fmt.Errorf("publish DB to %s: %w", tag, err)
	}
	digest, err = img.Digest()
	if err != nil {
		return "", v1.Hash{}, fmt.Errorf("publish DB: %w", err)
	}
	return tag.String(), digest, nil
}
