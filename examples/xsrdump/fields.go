package main

import (
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/xensr/xensr/stream/hvm"
	"github.com/xensr/xensr/stream/libxc"
)

// maxListed bounds how many elements of a list -v prints.
const maxListed = 8

// printFields prints a libxc record's fields on an indented line, as
// verify-stream-v2 -v does: numbers, lists (the first few), byte payloads
// by length; an HVM context is listed by its save records.
func printFields(w io.Writer, rec libxc.Record) {
	switch r := rec.(type) {
	case *libxc.PageData:
		return // summed up on the record line
	case *libxc.HVMContext:
		c, err := hvm.DecodeOptions(r.Data, hvm.Options{Relaxed: true})
		if err != nil {
			fmt.Fprintf(w, "%12s| %d bytes, undecodable: %v\n", "", len(r.Data), err)
			return
		}
		var names []string
		for _, e := range c.Entries {
			n := fmt.Sprintf("%v#%d", e.Typecode, e.Instance)
			if e.Short() {
				n += fmt.Sprintf("(%d bytes, older layout)", e.Length)
			}
			names = append(names, n)
		}
		fmt.Fprintf(w, "%12s| %d bytes: %s\n", "", len(r.Data), strings.Join(names, " "))
		return
	}
	if s := fields(reflect.ValueOf(rec)); s != "" {
		fmt.Fprintf(w, "%12s| %s\n", "", s)
	}
}

// fields formats a struct's exported fields as name=value pairs.
func fields(v reflect.Value) string {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return ""
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return value(v)
	}
	var parts []string
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		if !t.Field(i).IsExported() {
			continue
		}
		parts = append(parts, t.Field(i).Name+"="+value(v.Field(i)))
	}
	return strings.Join(parts, " ")
}

func value(v reflect.Value) string {
	switch v.Kind() {
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return fmt.Sprintf("<%d bytes>", v.Len())
		}
		var parts []string
		for i := 0; i < v.Len() && i < maxListed; i++ {
			parts = append(parts, value(v.Index(i)))
		}
		if v.Len() > maxListed {
			parts = append(parts, fmt.Sprintf("... %d more", v.Len()-maxListed))
		}
		return fmt.Sprintf("[%d: %s]", v.Len(), strings.Join(parts, " "))
	case reflect.Struct:
		return "{" + fields(v) + "}"
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if s, ok := v.Interface().(fmt.Stringer); ok {
			return s.String()
		}
		if v.Uint() >= 10 {
			return fmt.Sprintf("%#x", v.Uint())
		}
		return fmt.Sprint(v.Uint())
	default:
		return fmt.Sprint(v.Interface())
	}
}
