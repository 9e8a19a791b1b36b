package grpcserver

import (
	"fmt"
	"sync"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// maxFrozen bounds the encodings kept; each is one large response.
const maxFrozen = 32

// frozen holds the wire encoding of responses a handler promised never to
// change, so a large response served many times (a whole environment) is
// encoded once, not on every call.
var frozen = struct {
	sync.Mutex
	enc map[proto.Message][]byte
}{enc: map[proto.Message][]byte{}}

// Freeze promises that m will not be modified again, so its encoding can
// be reused for every call that returns m. It returns m.
func Freeze[M proto.Message](m M) M {
	frozen.Lock()
	defer frozen.Unlock()
	if _, ok := frozen.enc[m]; !ok {
		if len(frozen.enc) >= maxFrozen {
			clear(frozen.enc)
		}
		frozen.enc[m] = nil
	}
	return m
}

// codec is the standard proto codec, except for frozen messages, whose
// encoding is computed once.
type codec struct{ base encoding.CodecV2 }

func (c codec) Name() string { return c.base.Name() }

func (c codec) Unmarshal(data mem.BufferSlice, v any) error { return c.base.Unmarshal(data, v) }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return c.base.Marshal(v)
	}
	frozen.Lock()
	enc, isFrozen := frozen.enc[m]
	frozen.Unlock()
	if !isFrozen {
		return c.base.Marshal(v)
	}
	if enc == nil {
		var err error
		if enc, err = proto.Marshal(m); err != nil {
			return nil, fmt.Errorf("marshal frozen %T: %w", m, err)
		}
		frozen.Lock()
		if _, still := frozen.enc[m]; still {
			frozen.enc[m] = enc
		}
		frozen.Unlock()
	}
	// SliceBuffer does not return its bytes to a pool, so the shared
	// encoding is never recycled under another call.
	return mem.BufferSlice{mem.SliceBuffer(enc)}, nil
}
