package waldurtest

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/eventfn/eventfn/waldur"
)

func get(t *testing.T, s *Server, path string, out any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL+path, nil)
	req.Header.Set("Authorization", "Token "+s.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

func TestListOrdersFiltersByOfferingAndState(t *testing.T) {
	s := NewServer("tok")
	defer s.Close()
	off := NewUUID()
	a := s.AddOrder(waldur.Order{OfferingUUID: off, State: waldur.OrderExecuting})
	s.AddOrder(waldur.Order{OfferingUUID: off, State: waldur.OrderDone})
	s.AddOrder(waldur.Order{OfferingUUID: NewUUID(), State: waldur.OrderExecuting})
	b := s.AddOrder(waldur.Order{OfferingUUID: off})
	var got []waldur.Order
	get(t, s, "/api/marketplace-orders/?offering_uuid="+off+"&state=executing&state=pending-provider&page_size=300", &got)
	if len(got) != 2 || got[0].UUID != a.UUID || got[1].UUID != b.UUID {
		t.Fatalf("listed %+v, want %s then %s", got, a.UUID, b.UUID)
	}
}

func TestSetAsErred(t *testing.T) {
	s := NewServer("tok")
	defer s.Close()
	r := s.AddResource(waldur.ProviderResource{})
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/api/marketplace-provider-resources/"+r.UUID+"/set_as_erred/", nil)
	req.Header.Set("Authorization", "Token tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, _ := s.Resource(r.UUID); resp.StatusCode != http.StatusOK || got.State != "Erred" {
		t.Fatalf("status %s, state %q: want 200 and Erred", resp.Status, got.State)
	}
}
