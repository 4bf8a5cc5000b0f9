// The preferences panel (plain ES module, no build step): channels, categories, quiet hours,
// digest, how notifications present themselves (push sound and vibration, how long in-app toasts
// stay) and marketing consent, saved whole with PUT /api/preferences. The form and its controls are
// PreferencesForm's (preferences-form.js), which the panel extends.
//
// The gateway stores and publishes the full PreferencesUpdated record (not a diff), so the panel
// starts from what GET returned and writes back every field it got - settings it has no control
// for survive a save. Absent channel / category entries mean "defaults" to the flows (on, every
// category / channel), so only entries that were there or now differ from the defaults are sent.
//
// The gateway validates (schema, HH:MM times, IANA zones) and answers 400 with an `error` text;
// that text is shown as it is. A preferences.updated event (another device saved) refreshes the
// form unless the user has unsaved edits here.

import { CHANNELS, DAYS, DEFAULT_PRESENTATION, PreferencesForm, timeZones } from './preferences-form.js';

function splitList(value) {
  return value.split(',').map((part) => part.trim()).filter(Boolean);
}

export class PreferencesPanel extends PreferencesForm {
  /**
   * @param {object} options
   * @param {import('./client.js').NotifyClient} options.client
   * @param {Element} options.mount            where the <dialog> goes
   * @param {() => string[]} [options.categories]  categories to offer besides the saved ones
   */
  constructor({ client, mount, categories } = {}) {
    super();
    this.client = client;
    this.document = mount.ownerDocument;
    this.extraCategories = categories || (() => []);
    this.saved = null; // the last preferences the gateway confirmed
    this.dirty = false;
    this.zones = timeZones();
    this.controls = new Map(); // data-pref key -> element
    this._build(mount);
    this._off = client.on('preferences.updated', (event) => {
      if (event.preferences && !this.dirty) this._render(event.preferences);
      else if (event.preferences) this.saved = event.preferences;
    });
  }

  get isOpen() {
    return this.dialog.open;
  }

  async open() {
    this._setMessage('', '');
    if (!this.dialog.open) this.dialog.showModal();
    await this.load();
  }

  close() {
    if (this.dialog.open) this.dialog.close();
  }

  async load() {
    this.form.setAttribute('aria-busy', 'true');
    try {
      this._render(await this.client.getPreferences());
      this.dirty = false;
    } catch (error) {
      this._setMessage('error', `Could not load preferences: ${error.message}`);
    } finally {
      this.form.setAttribute('aria-busy', 'false');
    }
  }

  /** The record the form describes (what PUT sends). */
  value() {
    const base = this.saved || {};
    const get = (key) => this.controls.get(key);
    const checked = (key) => !!get(key)?.checked;
    const str = (key) => get(key)?.value ?? '';
    const orNull = (key) => str(key).trim() || null;

    const channels = {};
    for (const channel of CHANNELS) {
      const settings = {
        enabled: checked(`channel.${channel}.enabled`),
        categories: splitList(str(`channel.${channel}.categories`)),
        frequency: orNull(`channel.${channel}.frequency`),
        emergency_only: checked(`channel.${channel}.emergency_only`),
      };
      const isDefault = settings.enabled && !settings.categories.length && !settings.frequency && !settings.emergency_only;
      if (!isDefault || base.channels?.[channel]) channels[channel] = settings;
    }
    for (const [channel, settings] of Object.entries(base.channels || {})) channels[channel] ??= settings;

    const categories = {};
    for (const category of this._categoryNames) {
      const settings = {
        enabled: checked(`category.${category}.enabled`),
        channels: CHANNELS.filter((channel) => checked(`category.${category}.channel.${channel}`)),
        priority_override: orNull(`category.${category}.priority_override`),
      };
      const isDefault = settings.enabled && !settings.channels.length && !settings.priority_override;
      if (!isDefault || base.categories?.[category]) categories[category] = settings;
    }

    const quietHours = checked('quiet.enabled') ? {
      start_time: str('quiet.start_time'),
      end_time: str('quiet.end_time'),
      timezone: str('quiet.timezone'),
      days: DAYS.map(([day]) => day).filter((day) => checked(`quiet.days.${day}`)),
    } : null;

    const presentation = {
      sound: checked('presentation.sound'),
      vibration: checked('presentation.vibration'),
      auto_dismiss: checked('presentation.auto_dismiss'),
      // Not a whole number: sent as typed, so the gateway's message says what is wrong with it.
      duration_seconds: /^\d+$/.test(str('presentation.duration_seconds').trim())
        ? Number(str('presentation.duration_seconds')) : str('presentation.duration_seconds'),
    };
    const presentationIsDefault = Object.entries(DEFAULT_PRESENTATION).every(([key, v]) => presentation[key] === v);

    const digestOn = checked('digest.enabled');
    const digest = digestOn || base.digest ? {
      enabled: digestOn,
      frequency: str('digest.frequency'),
      time: str('digest.time'),
      timezone: str('digest.timezone'),
    } : null;

    return {
      ...base,
      enabled: checked('enabled'),
      quiet_hours: quietHours,
      digest,
      channels,
      categories,
      presentation: presentationIsDefault && !base.presentation ? null : presentation,
      marketing_consent: checked('marketing_consent'),
      email: orNull('email'),
      phone: orNull('phone'),
      locale: orNull('locale'),
      timezone: str('timezone') || 'UTC',
    };
  }

  async save() {
    this._setMessage('', '');
    this.saveButton.disabled = true;
    try {
      const saved = await this.client.putPreferences(this.value());
      this.dirty = false;
      this._render(saved);
      this._setMessage('status', 'Saved');
      return saved;
    } catch (error) {
      // The gateway's own words (e.g. "quiet_hours.timezone: unknown timezone 'Mars/Olympus'").
      this._setMessage('error', error.message);
      return null;
    } finally {
      this.saveButton.disabled = false;
    }
  }

  destroy() {
    this._off?.();
    this.dialog.remove();
  }
}

export default PreferencesPanel;
