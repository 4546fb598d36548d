// Pre-fill the time zone field from the browser (Intl), only when it is empty and the zone is
// one the server knows. Without JavaScript the field is a searchable list; blank means the
// default wave. Served from our own origin: the page's CSP allows no other script.
(function () {
  var field = document.getElementById("timezone");
  if (!field || field.value || !window.Intl) { return; }
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  var known = document.querySelector('#timezones option[value="' + zone + '"]');
  if (zone && known) { field.value = zone; }
})();
