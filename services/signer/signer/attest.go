package signer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/cosign/attestation"
	cbundle "github.com/sigstore/cosign/v2/pkg/cosign/bundle"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/cosign/v2/pkg/types"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
	"github.com/sigstore/sigstore/pkg/signature/options"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

// Predicate is one in-toto predicate to attest.
type Predicate struct {
	// Type is cosign's predicate type name ("cyclonedx", "vuln",
	// "slsaprovenance1"), as given to `cosign attest --type`.
	Type string
	// URI is the in-toto predicate type URI that Type maps to.
	URI string
	// Body is the predicate JSON.
	Body []byte
}

// Attest wraps each predicate in an in-toto statement about t's digest,
// signs it as a DSSE envelope and pushes all of them to the .att tag in one
// write, next to any attestations already there.
func (s *Signer) Attest(ctx context.Context, t Target, st *State, preds []Predicate) ([]*customsv1.Attestation, error) {
	if len(preds) == 0 {
		return nil, nil
	}
	wrapped := dsse.WrapSigner(s.key.SV, types.IntotoPayloadType)
	var se oci.SignedEntity = st.entity()
	out := make([]*customsv1.Attestation, 0, len(preds))
	for _, p := range preds {
		stmt, err := attestation.GenerateStatement(attestation.GenerateOpts{
			Predicate: bytes.NewReader(p.Body),
			Type:      p.Type,
			Digest:    t.Digest.DigestStr()[len("sha256:"):],
			Repo:      t.Digest.Repository.String(),
		})
		if err != nil {
			return nil, fmt.Errorf("%s statement: %w", p.Type, err)
		}
		body, err := json.Marshal(stmt)
		if err != nil {
			return nil, fmt.Errorf("%s statement: %w", p.Type, err)
		}
		env, err := wrapped.SignMessage(bytes.NewReader(body), options.WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("sign %s attestation: %w", p.Type, err)
		}
		opts := []static.Option{
			static.WithLayerMediaType(types.DssePayloadType),
			static.WithAnnotations(map[string]string{"predicateType": p.URI}),
		}
		if s.rekor != nil {
			entry, err := cosign.TLogUploadDSSEEnvelope(ctx, s.rekor, env, s.key.PublicPEM)
			if err != nil {
				return nil, fmt.Errorf("rekor upload of %s attestation: %w", p.Type, err)
			}
			opts = append(opts, static.WithBundle(cbundle.EntryToBundle(entry)))
		}
		att, err := static.NewAttestation(env, opts...)
		if err != nil {
			return nil, fmt.Errorf("%s attestation layer: %w", p.Type, err)
		}
		if se, err = mutate.AttachAttestationToEntity(se, att); err != nil {
			return nil, fmt.Errorf("attach %s attestation: %w", p.Type, err)
		}
		d, err := att.Digest()
		if err != nil {
			return nil, fmt.Errorf("%s attestation digest: %w", p.Type, err)
		}
		out = append(out, &customsv1.Attestation{PredicateType: p.URI, Digest: d.String()})
	}
	if err := ociremote.WriteAttestations(t.Digest.Repository, se, t.ociOpts()...); err != nil {
		return nil, fmt.Errorf("push attestations for %s: %w", t.Digest, err)
	}
	return out, nil
}
