// Package protocol holds what kong-sim and kpm-tap both need to know about
// the wire between Kong and an external plugin server: the ProtoBuf:1 frame
// (go-pdk) and the MsgPack:1 method names (Kong's mp_rpc.lua, the Python and
// JavaScript PDKs). The messages themselves are go-pdk's generated types
// (github.com/Kong/go-pdk/server/kong_plugin_protocol).
package protocol

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// Names of the protocols as a plugin server's `-dump` reports them in its
// "Protocol" field; Kong assumes MsgPack:1 when the field is missing.
const (
	ProtoBuf = "ProtoBuf:1"
	MsgPack  = "MsgPack:1"
)

// ReadFrame reads one ProtoBuf:1 frame: a little-endian uint32 length, then
// that many bytes. It returns io.EOF only when the stream ends before a
// frame starts, io.ErrUnexpectedEOF when it ends inside one.
func ReadFrame(r io.Reader) ([]byte, error) {
	return ReadFrameLimit(r, math.MaxUint32)
}

// ReadFrameLimit is ReadFrame refusing frames longer than limit bytes, for a
// reader that cannot trust the stream to be ProtoBuf:1 at all.
func ReadFrameLimit(r io.Reader, limit uint32) ([]byte, error) {
	var header [4]byte
	if _, err := io.ReadFull(r, header[:]); err != nil {
		return nil, err
	}
	size := binary.LittleEndian.Uint32(header[:])
	if size > limit {
		return nil, fmt.Errorf("a frame of %d bytes, more than %d", size, limit)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return data, nil
}

// AppendFrame appends data as one ProtoBuf:1 frame to buf.
func AppendFrame(buf, data []byte) []byte {
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(data)))
	return append(buf, data...)
}

// WriteFrame writes data as one ProtoBuf:1 frame, in a single Write.
func WriteFrame(w io.Writer, data []byte) error {
	_, err := w.Write(AppendFrame(make([]byte, 0, 4+len(data)), data))
	return err
}
