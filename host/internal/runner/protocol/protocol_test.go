package protocol

import (
	"bytes"
	"errors"
	"testing"
)

func TestDecode(t *testing.T) {
	cases := []struct {
		name    string
		frames  [][]byte
		want    Message
		wantErr bool
	}{
		{name: "type and payload", frames: [][]byte{[]byte("stdout"), []byte("hi\n")}, want: Message{Type: "stdout", Payload: []byte("hi\n")}},
		{name: "lone type frame", frames: [][]byte{[]byte("interrupt")}, want: Message{Type: "interrupt"}},
		{name: "no frames", frames: nil, wantErr: true},
		{name: "three frames", frames: [][]byte{[]byte("a"), nil, nil}, wantErr: true},
		{name: "empty type", frames: [][]byte{{}, []byte("x")}, wantErr: true},
		{name: "upper-case type", frames: [][]byte{[]byte("STDOUT"), nil}, wantErr: true},
		{name: "binary type", frames: [][]byte{{0xff, 0x00}, nil}, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(tc.frames)
			if tc.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil || got.Type != tc.want.Type || !bytes.Equal(got.Payload, tc.want.Payload) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestPayloads(t *testing.T) {
	st, err := DecodeExitStatus([]byte(`{"exitCode": 3}`))
	if err != nil || st.ExitCode != 3 {
		t.Fatalf("exit status %+v, %v", st, err)
	}
	if st, err := DecodeExitStatus(nil); err != nil || st.ExitCode != 0 {
		t.Fatalf("empty exit status %+v, %v", st, err)
	}
	if _, err := DecodeExitStatus([]byte(`{"exitCode": "x"}`)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("bad exit status: %v", err)
	}
	req, err := DecodeServiceRequest([]byte(`{"name":"jupyter","port":8080,"protocol":"http"}`))
	if err != nil || req.Name != "jupyter" || req.Port != 8080 {
		t.Fatalf("service request %+v, %v", req, err)
	}
	for _, bad := range []string{`{}`, `{"name":"x","port":70000}`, `{"name":"x","ports":[-1]}`, `[1]`, "{\"name\":\"\xff\"}"} {
		if _, err := DecodeServiceRequest([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("service request %q: %v, want ErrMalformed", bad, err)
		}
	}
}

// FuzzDecode feeds arbitrary frames, as a peer on the network could send.
func FuzzDecode(f *testing.F) {
	f.Add([]byte("stdout"), []byte("hello"), []byte(`{"exitCode":1}`))
	f.Add([]byte("start-service"), []byte(`{"name":"web","port":80,"command":["x"]}`), []byte(`{"code":"ec","options":{"row":1}}`))
	f.Fuzz(func(t *testing.T, typ, payload, extra []byte) {
		msg, err := Decode([][]byte{typ, payload})
		if err == nil {
			if msg.Type != string(typ) || !bytes.Equal(msg.Payload, payload) {
				t.Fatalf("decode changed the message: %+v", msg)
			}
			if again, err := Decode(msg.Frames()); err != nil || again.Type != msg.Type {
				t.Fatalf("frames of a decoded message do not decode: %v", err)
			}
		}
		if req, err := DecodeServiceRequest(extra); err == nil && req.Name == "" {
			t.Fatal("accepted a service request without a name")
		}
		_, _ = DecodeExitStatus(extra)
		var cr CompletionRequest
		_ = DecodeJSON(extra, &cr)
	})
}
