package migrate

import (
	"bytes"
	"context"
	"fmt"
)

// A save of a small fake PVH domain: the image holds every populated page,
// and the domain stays suspended until the caller commits (destroys) or
// aborts (resumes) it.
func ExampleSaver() {
	d := newFakeDomain(1500) // 1500 RAM frames, one hole, 8 special pages
	var img bytes.Buffer
	s := NewSaver(d, SaveOptions{Config: []byte(`{"c_info":{"name":"guest3"}}`), XenMajor: 4, XenMinor: 17})
	st, err := s.Save(context.Background(), &img)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("pages:", st.Pages, "rounds:", len(st.Rounds), "suspended:", d.info.Suspended())
	im, _ := parseImage(img.Bytes())
	fmt.Println("libxc records:", im.libxcTypes)
	s.Abort()
	fmt.Println("resumed:", !d.info.Suspended())
	// Output:
	// pages: 1507 rounds: 1 suspended: true
	// libxc records: [17 18 16 1 8 9 10 0]
	// resumed: true
}
