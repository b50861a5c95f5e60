package nsinit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// fill sets every exported field reachable from v to a value of its own
// (slices and maps get two elements), so that a round trip that drops or
// mixes up a field shows in a comparison.
func fill(t *testing.T, v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.String:
		v.SetString("s" + strings.Repeat("é,\x00\"", *n%3) + string(rune('a'+*n%26)))
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(*n) * 1000003 * int64(1-2*(*n%2)))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			fill(t, s.Index(i), n)
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for range 2 {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fill(t, k, n)
			fill(t, e, n)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(t, v.Field(i), n)
			}
		}
	case reflect.Uint8:
		v.SetUint(uint64(*n % 256))
	case reflect.Pointer:
		// Config.OCI: an OCI config travels as JSON (TestConfigCodecOCI).
	default:
		t.Fatalf("fill: a field of kind %s: teach the test and appendConfig about it", v.Kind())
	}
}

// TestConfigBinaryCodec: every field of a Config survives the trip over
// the config pipe (a field added to Config but not to appendConfig and
// parseConfig fails here), and the init reads the config without reading
// past it.
func TestConfigBinaryCodec(t *testing.T) {
	var want Config
	n := 0
	fill(t, reflect.ValueOf(&want).Elem(), &n)
	want.Version = Version
	var b bytes.Buffer
	if err := WriteConfig(&b, &want); err != nil {
		t.Fatal(err)
	}
	b.WriteString("after")
	got, err := ReadConfig(&b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("ReadConfig =\n%+v\nwant\n%+v", *got, want)
	}
	if rest, _ := io.ReadAll(&b); string(rest) != "after" {
		t.Errorf("ReadConfig read past the config: %q left", rest)
	}

	// The zero config: nil and empty come back nil.
	b.Reset()
	if err := WriteConfig(&b, &Config{}); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadConfig(&b); err != nil || !reflect.DeepEqual(*got, Config{Version: Version}) {
		t.Errorf("ReadConfig of a zero config = %+v, %v", got, err)
	}
}

// TestConfigCodecOCI: an OCI container's config still goes as JSON.
func TestConfigCodecOCI(t *testing.T) {
	var b bytes.Buffer
	cfg := &Config{Name: "c", OCI: &OCIConfig{Rootfs: "/r", Hostname: "h", Console: -1}}
	if err := WriteConfig(&b, cfg); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b.Bytes(), []byte("{")) {
		t.Fatalf("an OCI config was not written as JSON: %q", b.Bytes())
	}
	got, err := ReadConfig(&b)
	if err != nil || got.OCI == nil || got.OCI.Rootfs != "/r" || got.OCI.Hostname != "h" || got.Name != "c" {
		t.Errorf("ReadConfig = %+v, %v", got, err)
	}
}

// TestConfigCodecRefuses: a truncated, oversized, padded or garbled
// config, or one of another version, is an error, never a panic or a
// config read wrong.
func TestConfigCodecRefuses(t *testing.T) {
	var b bytes.Buffer
	if err := WriteConfig(&b, &Config{Name: "x", Env: []string{"A=1"}, Etc: []File{{Target: "/etc/hosts", Data: []byte("h")}}}); err != nil {
		t.Fatal(err)
	}
	good := b.Bytes()
	head := len(configMagic) + 4
	for i := 1; i < len(good); i++ {
		if _, err := ReadConfig(bytes.NewReader(good[:i])); err == nil {
			t.Errorf("a config cut at %d of %d bytes was read", i, len(good))
		}
	}
	// The payload itself cut, padded, or every byte flipped in turn: an
	// error or a config, but never a panic.
	payload := good[head:]
	frame := func(p []byte) []byte {
		f := append([]byte(configMagic), binary.LittleEndian.AppendUint32(nil, uint32(len(p)))...)
		return append(f, p...)
	}
	if _, err := ReadConfig(bytes.NewReader(frame(payload[:len(payload)-1]))); err == nil {
		t.Error("a config missing its last byte was read")
	}
	if _, err := ReadConfig(bytes.NewReader(frame(append(payload[:len(payload):len(payload)], 0)))); err == nil {
		t.Error("a config with a byte too many was read")
	}
	for i := range payload {
		p := bytes.Clone(payload)
		p[i] ^= 0xff
		_, _ = ReadConfig(bytes.NewReader(frame(p)))
	}
	huge := append([]byte(configMagic), binary.LittleEndian.AppendUint32(nil, configMax+1)...)
	if _, err := ReadConfig(bytes.NewReader(huge)); err == nil {
		t.Error("a config announcing more than configMax bytes was read")
	}
	old := frame(binary.AppendVarint(nil, Version+1))
	if _, err := ReadConfig(bytes.NewReader(old)); err == nil {
		t.Error("a config of another version was read")
	}
	var v Config
	v.Version = Version + 1
	p := appendConfig(nil, &v)
	if _, err := ReadConfig(bytes.NewReader(frame(p))); !errors.Is(err, ErrVersion) {
		t.Errorf("a config of version %d: %v, want ErrVersion", Version+1, err)
	}
}
