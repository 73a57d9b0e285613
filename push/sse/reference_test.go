package sse

import (
	"bytes"
	"io"
	"strings"
	"time"
)

// refResult is what a parser observed over a whole stream.
type refResult struct {
	Events   []Event
	LastID   string
	Retry    time.Duration
	RetrySet bool
}

// referenceParse is a literal transcription of §9.2.5–9.2.6 over a complete
// input, written for clarity rather than speed: decode the whole stream as
// UTF-8 (BOM stripped), split it into lines, interpret each line. It has no
// limits. The streaming Decoder must agree with it on every input.
func referenceParse(input []byte) refResult {
	input = bytes.TrimPrefix(input, bom)
	text := decodeUTF8(input)

	var res refResult
	var data, eventType, idBuf strings.Builder
	for {
		i := strings.IndexAny(text, "\r\n")
		if i < 0 {
			return res // the rest is an unterminated line: discarded at EOF
		}
		line := text[:i]
		if text[i] == '\r' && i+1 < len(text) && text[i+1] == '\n' {
			i++
		}
		text = text[i+1:]

		if line == "" {
			res.LastID = idBuf.String()
			if data.Len() == 0 {
				eventType.Reset()
				continue
			}
			d := strings.TrimSuffix(data.String(), "\n")
			typ := eventType.String()
			if typ == "" {
				typ = "message"
			}
			res.Events = append(res.Events, Event{ID: res.LastID, Type: typ, Data: d})
			data.Reset()
			eventType.Reset()
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, found := strings.Cut(line, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch field {
		case "event":
			eventType.Reset()
			eventType.WriteString(value)
		case "data":
			data.WriteString(value)
			data.WriteString("\n")
		case "id":
			if !strings.ContainsRune(value, 0) {
				idBuf.Reset()
				idBuf.WriteString(value)
			}
		case "retry":
			if value != "" && strings.Trim(value, "0123456789") == "" {
				ms, ok := parseRetry([]byte(value))
				if ok {
					res.Retry, res.RetrySet = time.Duration(ms)*time.Millisecond, true
				}
			}
		}
	}
}

// decodeStream runs a Decoder over r to the end and reports what it saw and
// the error that ended it (io.EOF for a clean end).
func decodeStream(r io.Reader, cfg DecoderConfig) (refResult, error) {
	d := cfg.NewDecoder(r)
	var res refResult
	for {
		ev, err := d.Next()
		if err != nil {
			res.LastID = d.LastEventID()
			res.Retry, res.RetrySet = d.Retry()
			return res, err
		}
		res.Events = append(res.Events, ev)
	}
}

// chunkReader returns its chunks one Read at a time.
type chunkReader struct{ chunks [][]byte }

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.chunks) > 0 && len(r.chunks[0]) == 0 {
		r.chunks = r.chunks[1:]
	}
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[0])
	r.chunks[0] = r.chunks[0][n:]
	return n, nil
}

// splitEvery cuts b into chunks of n bytes.
func splitEvery(b []byte, n int) *chunkReader {
	r := &chunkReader{}
	for len(b) > n {
		r.chunks = append(r.chunks, b[:n])
		b = b[n:]
	}
	r.chunks = append(r.chunks, b)
	return r
}

// splitCRLF cuts b between every CR and the LF after it, so every CRLF
// straddles two reads.
func splitCRLF(b []byte) *chunkReader {
	r := &chunkReader{}
	for {
		i := bytes.Index(b, []byte("\r\n"))
		if i < 0 {
			r.chunks = append(r.chunks, b)
			return r
		}
		r.chunks = append(r.chunks, b[:i+1])
		b = b[i+1:]
	}
}

// readers returns the ways every decoder test feeds its input.
func readers(input []byte) map[string]func() io.Reader {
	return map[string]func() io.Reader{
		"whole":      func() io.Reader { return bytes.NewReader(input) },
		"one byte":   func() io.Reader { return splitEvery(input, 1) },
		"3 bytes":    func() io.Reader { return splitEvery(input, 3) },
		"split CRLF": func() io.Reader { return splitCRLF(input) },
		"data+EOF":   func() io.Reader { return &eofWithData{b: input} },
	}
}

// eofWithData returns all its data and io.EOF from the same Read.
type eofWithData struct{ b []byte }

func (r *eofWithData) Read(p []byte) (int, error) {
	n := copy(p, r.b)
	r.b = r.b[n:]
	if len(r.b) == 0 {
		return n, io.EOF
	}
	return n, nil
}
