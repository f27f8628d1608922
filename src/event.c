/* placeholder: event */
