// The form of the preferences panel (plain ES module, no build step): the <dialog>, one labelled
// control per setting, filled from a preferences record. PreferencesPanel (preferences.js) extends
// it with loading, the record the form describes and saving; the form's submit and Close button call
// its save() and close().

export const CHANNELS = Object.freeze(['in_app', 'push', 'email', 'sms', 'webhook']);
const CHANNEL_LABELS = { in_app: 'In-app', push: 'Push', email: 'Email', sms: 'SMS', webhook: 'Webhook' };
export const DEFAULT_CATEGORIES = Object.freeze(['messages', 'mentions', 'security', 'billing', 'marketing']);
export const DAYS = [['mon', 'Mon'], ['tue', 'Tue'], ['wed', 'Wed'], ['thu', 'Thu'], ['fri', 'Fri'], ['sat', 'Sat'], ['sun', 'Sun']];
const CHANNEL_FREQUENCIES = [['', 'Default'], ['immediate', 'Immediately'], ['hourly', 'Hourly'], ['daily', 'Daily']];
const PRIORITY_OVERRIDES = [['', 'As sent'], ['low', 'Low'], ['normal', 'Normal'], ['high', 'High'], ['critical', 'Critical']];
const DIGEST_FREQUENCIES = [['hourly', 'Hourly'], ['daily', 'Daily'], ['weekly', 'Weekly']];
// What a null `presentation` means to the flows and the toasts (schemas/PreferencesUpdated.avsc).
export const DEFAULT_PRESENTATION = Object.freeze({ sound: true, vibration: true, auto_dismiss: true, duration_seconds: 6 });
const TOAST_SECONDS = { min: 3, max: 30 }; // the gateway refuses others
let instances = 0;

/** IANA zones the browser knows, UTC first (Chrome's list leaves it out). */
export function timeZones() {
  let zones = [];
  try {
    zones = Intl.supportedValuesOf('timeZone');
  } catch {
    zones = [Intl.DateTimeFormat().resolvedOptions().timeZone].filter(Boolean);
  }
  return ['UTC', ...zones.filter((zone) => zone !== 'UTC')];
}

export function browserTimeZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

export class PreferencesForm {
  _build(mount) {
    const doc = this.document;
    const uid = `nf-prefs-${++instances}`;
    this.uid = uid;
    this.dialog = doc.createElement('dialog');
    this.dialog.className = 'nf-prefs';
    this.dialog.setAttribute('aria-labelledby', `${uid}-title`);
    this.form = doc.createElement('form');
    this.form.noValidate = true; // the gateway is the validator; its message is the one shown
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.save();
    });
    this.form.addEventListener('input', () => {
      this.dirty = true;
    });
    this.form.addEventListener('change', () => {
      this.dirty = true;
      this._syncDisabled();
    });

    const title = doc.createElement('h2');
    title.id = `${uid}-title`;
    title.textContent = 'Notification preferences';

    this.generalSet = this._fieldset('General');
    this.channelSet = this._fieldset('Channels');
    this.categorySet = this._fieldset('Categories');
    this.quietSet = this._fieldset('Quiet hours');
    this.digestSet = this._fieldset('Digest');
    this.presentationSet = this._fieldset('How notifications appear');
    this.privacySet = this._fieldset('Marketing');

    this.error = doc.createElement('p');
    this.error.className = 'nf-prefs-error';
    this.error.setAttribute('role', 'alert');
    this.status = doc.createElement('p');
    this.status.className = 'nf-prefs-status';
    this.status.setAttribute('role', 'status');

    const buttons = doc.createElement('div');
    buttons.className = 'nf-prefs-buttons';
    this.saveButton = doc.createElement('button');
    this.saveButton.type = 'submit';
    this.saveButton.className = 'nf-prefs-save';
    this.saveButton.textContent = 'Save';
    const closeButton = doc.createElement('button');
    closeButton.type = 'button';
    closeButton.className = 'nf-prefs-close';
    closeButton.textContent = 'Close';
    closeButton.addEventListener('click', () => this.close());
    buttons.append(this.saveButton, closeButton);

    this.form.append(title, this.generalSet, this.channelSet, this.categorySet, this.quietSet, this.digestSet,
      this.presentationSet, this.privacySet, this.error, this.status, buttons);
    this.dialog.appendChild(this.form);
    mount.appendChild(this.dialog);
  }

  _fieldset(legendText) {
    const fieldset = this.document.createElement('fieldset');
    const legend = this.document.createElement('legend');
    legend.textContent = legendText;
    fieldset.appendChild(legend);
    return fieldset;
  }

  /** A labelled control registered under `key` (also its data-pref attribute, for tests and styling). */
  _control(key, labelText, element) {
    element.setAttribute('data-pref', key);
    element.id = `${this.uid}-${this.controls.size}`;
    this.controls.set(key, element);
    const label = this.document.createElement('label');
    label.htmlFor = element.id;
    label.textContent = labelText;
    const wrap = this.document.createElement('span');
    wrap.className = `nf-field nf-field--${element.type === 'checkbox' ? 'check' : 'input'}`;
    if (element.type === 'checkbox') wrap.append(element, label);
    else wrap.append(label, element);
    return wrap;
  }

  _checkbox(key, labelText, checked) {
    const input = this.document.createElement('input');
    input.type = 'checkbox';
    input.checked = !!checked;
    return this._control(key, labelText, input);
  }

  _input(key, labelText, type, value, extra = {}) {
    const input = this.document.createElement('input');
    input.type = type;
    input.value = value ?? '';
    Object.assign(input, extra);
    return this._control(key, labelText, input);
  }

  _select(key, labelText, options, value) {
    const select = this.document.createElement('select');
    const values = options.map(([v]) => v);
    // A saved value the list lacks (an alias zone, a value from a newer client) is kept, not lost.
    if (value && !values.includes(value)) options = [...options, [value, value]];
    for (const [v, text] of options) {
      const option = this.document.createElement('option');
      option.value = v;
      option.textContent = text;
      select.appendChild(option);
    }
    select.value = value ?? options[0]?.[0] ?? '';
    return this._control(key, labelText, select);
  }

  _zoneSelect(key, labelText, value) {
    return this._select(key, labelText, this.zones.map((zone) => [zone, zone.replaceAll('_', ' ')]), value);
  }

  _clear(fieldset) {
    while (fieldset.children.length > 1) fieldset.lastChild.remove(); // keep the legend
  }

  _render(prefs) {
    this.saved = prefs;
    this.controls.clear();
    const here = browserTimeZone();
    for (const set of [this.generalSet, this.channelSet, this.categorySet, this.quietSet, this.digestSet,
      this.presentationSet, this.privacySet]) {
      this._clear(set);
    }

    this.generalSet.append(
      this._checkbox('enabled', 'Notifications on', prefs.enabled !== false),
      this._zoneSelect('timezone', 'Time zone', prefs.timezone || here),
      this._input('locale', 'Language', 'text', prefs.locale, { placeholder: 'e.g. en-GB', autocomplete: 'language' }),
      this._input('email', 'Email', 'email', prefs.email, { autocomplete: 'email' }),
      this._input('phone', 'Phone (E.164)', 'tel', prefs.phone, { autocomplete: 'tel', placeholder: '+15551234567' }),
    );

    const channelList = this.document.createElement('div');
    channelList.className = 'nf-prefs-rows';
    for (const channel of CHANNELS) {
      const s = prefs.channels?.[channel] || {};
      const row = this.document.createElement('div');
      row.className = 'nf-prefs-row';
      row.dataset.channel = channel;
      row.append(
        this._checkbox(`channel.${channel}.enabled`, CHANNEL_LABELS[channel], s.enabled !== false),
        this._select(`channel.${channel}.frequency`, 'Frequency', CHANNEL_FREQUENCIES, s.frequency || ''),
        this._checkbox(`channel.${channel}.emergency_only`, 'Critical only', s.emergency_only),
        this._input(`channel.${channel}.categories`, 'Only categories', 'text', (s.categories || []).join(', '),
          { placeholder: 'all' }),
      );
      channelList.appendChild(row);
    }
    this.channelSet.appendChild(channelList);

    this._categoryNames = [...new Set([...Object.keys(prefs.categories || {}), ...this.extraCategories(),
      ...DEFAULT_CATEGORIES])].sort();
    this.categoryList = this.document.createElement('div');
    this.categoryList.className = 'nf-prefs-rows';
    for (const category of this._categoryNames) this.categoryList.appendChild(this._categoryRow(category, prefs.categories?.[category]));
    const add = this.document.createElement('div');
    add.className = 'nf-prefs-add';
    const addInput = this.document.createElement('input');
    addInput.type = 'text';
    addInput.placeholder = 'category';
    addInput.setAttribute('aria-label', 'New category');
    const addButton = this.document.createElement('button');
    addButton.type = 'button';
    addButton.textContent = 'Add category';
    addButton.addEventListener('click', () => {
      const name = addInput.value.trim();
      if (!name || this._categoryNames.includes(name)) return;
      this._categoryNames.push(name);
      this.categoryList.appendChild(this._categoryRow(name, null));
      addInput.value = '';
      this.dirty = true;
    });
    add.append(addInput, addButton);
    this.categorySet.append(this.categoryList, add);

    const q = prefs.quiet_hours;
    const days = new Set((q?.days || []).map((d) => String(d).slice(0, 3).toLowerCase()));
    const dayRow = this.document.createElement('div');
    dayRow.className = 'nf-prefs-days';
    dayRow.setAttribute('role', 'group');
    dayRow.setAttribute('aria-label', 'Days (none: every day)');
    for (const [day, label] of DAYS) dayRow.appendChild(this._checkbox(`quiet.days.${day}`, label, days.has(day)));
    this.quietSet.append(
      this._checkbox('quiet.enabled', 'Hold notifications during quiet hours (critical ones still come)', !!q),
      this._input('quiet.start_time', 'From', 'time', q?.start_time || '22:00'),
      this._input('quiet.end_time', 'Until', 'time', q?.end_time || '07:00'),
      this._zoneSelect('quiet.timezone', 'Time zone', q?.timezone || prefs.timezone || here),
      dayRow,
    );

    const d = prefs.digest;
    this.digestSet.append(
      this._checkbox('digest.enabled', 'Bundle non-urgent notifications into a digest', !!d?.enabled),
      this._select('digest.frequency', 'Every', DIGEST_FREQUENCIES, d?.frequency || 'daily'),
      this._input('digest.time', 'At', 'time', d?.time || '09:00'),
      this._zoneSelect('digest.timezone', 'Time zone', d?.timezone || prefs.timezone || here),
    );

    const p = { ...DEFAULT_PRESENTATION, ...(prefs.presentation || {}) };
    this.presentationSet.append(
      this._checkbox('presentation.sound', 'Push: play a sound', p.sound),
      this._checkbox('presentation.vibration', 'Push: vibrate', p.vibration),
      this._checkbox('presentation.auto_dismiss', 'In-app: close notifications by themselves (critical ones keep '
        + 'their own time)', p.auto_dismiss),
      this._input('presentation.duration_seconds', `after (seconds, ${TOAST_SECONDS.min} to ${TOAST_SECONDS.max})`,
        'number', p.duration_seconds, { min: TOAST_SECONDS.min, max: TOAST_SECONDS.max, step: 1 }),
    );

    this.privacySet.append(this._checkbox('marketing_consent', 'Send me product news and offers',
      prefs.marketing_consent));
    this._syncDisabled();
  }

  _categoryRow(category, s) {
    const row = this.document.createElement('div');
    row.className = 'nf-prefs-row';
    row.setAttribute('data-category', category);
    const channels = new Set(s?.channels || []);
    const channelBoxes = this.document.createElement('span');
    channelBoxes.className = 'nf-prefs-channels';
    channelBoxes.setAttribute('role', 'group');
    channelBoxes.setAttribute('aria-label', `Channels for ${category} (none: all)`);
    for (const channel of CHANNELS) {
      channelBoxes.appendChild(this._checkbox(`category.${category}.channel.${channel}`, CHANNEL_LABELS[channel],
        channels.has(channel)));
    }
    row.append(
      this._checkbox(`category.${category}.enabled`, category, s?.enabled !== false),
      channelBoxes,
      this._select(`category.${category}.priority_override`, 'Priority', PRIORITY_OVERRIDES, s?.priority_override || ''),
    );
    return row;
  }

  /** Sub-settings of a switched-off section are shown but not editable. */
  _syncDisabled() {
    const quietOn = !!this.controls.get('quiet.enabled')?.checked;
    const digestOn = !!this.controls.get('digest.enabled')?.checked;
    for (const [key, el] of this.controls) {
      if (key.startsWith('quiet.') && key !== 'quiet.enabled') el.disabled = !quietOn;
      if (key.startsWith('digest.') && key !== 'digest.enabled') el.disabled = !digestOn;
    }
    const duration = this.controls.get('presentation.duration_seconds');
    if (duration) duration.disabled = !this.controls.get('presentation.auto_dismiss')?.checked;
  }

  _setMessage(kind, message) {
    this.error.textContent = kind === 'error' ? message : '';
    this.status.textContent = kind === 'status' ? message : '';
  }
}
