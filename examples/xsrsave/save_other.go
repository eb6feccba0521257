//go:build !linux

package main

import "errors"

func saveDomain(a saveArgs) error {
	return errors.New("xsrsave: saving a domain needs Linux with /dev/xen/privcmd")
}
