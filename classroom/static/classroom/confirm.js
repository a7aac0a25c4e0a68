/*
 * Destructive forms ask first: a form with data-confirm="question" is submitted only when the
 * person confirms (withdrawing consent, ending a class).
 */
(function () {
  'use strict';
  Array.prototype.forEach.call(document.querySelectorAll('form[data-confirm]'), function (form) {
    form.addEventListener('submit', function (event) {
      if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
    });
  });
})();
